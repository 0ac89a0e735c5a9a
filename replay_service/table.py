"""A replay table: preallocated column storage in a ring, a selector, a rate limiter.

Usage, in process (the gRPC server wraps the same object)::

    table = Table(
        name="transitions",
        selector=Prioritized(alpha=0.6),
        remover=OldestFirst(),
        max_size=1_000_000,
        rate_limiter=MinSize(1_000),
        signature={"obs": FieldSpec("float32", (4,)), "action": FieldSpec("int64", ())},
    )
    keys = table.insert({"obs": obs_batch, "action": action_batch})   # n items at once
    batch = table.sample(256)                      # keys, probabilities, columns
    table.update_priorities(batch.keys, abs(td_error) + 1e-6)

Items live in a ring of ``max_size`` slots, at slot ``key % max_size`` (``columns.py``
keeps their bytes); when the ring is full the next insert overwrites the oldest slots
(oldest-first removal). This module keeps which slots are live, their priorities and the
selector's index over them, and the counters the rate limiter decides on; ``waiting.py``
keeps the lock and the waits.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from shoal.protos.tables import (
    FieldSpec,
    Fifo,
    MinSize,
    OldestFirst,
    Queue,
    RateLimiter,
    Selector,
    TableCounts,
    TableSpec,
)
from shoal.replay_service.columns import ColumnStore
from shoal.replay_service.items import (
    ColumnValue,
    CompressedRows,
    Draw,
    InvalidItems,
    RateLimiterTimeout,
    TableClosed,
    TableState,
    TableStats,
    WaitCancelled,
    checked_priorities,
)
from shoal.replay_service.selectors import build_index
from shoal.replay_service.waiting import Gate


class Table:
    def __init__(
        self,
        name: str,
        selector: Selector,
        remover: OldestFirst,
        max_size: int,
        rate_limiter: RateLimiter,
        signature: Mapping[str, FieldSpec],
        max_times_sampled: int = 0,
        seed: int | None = None,
    ) -> None:
        if not name:
            raise ValueError("name: expected a non-empty table name")
        if not isinstance(remover, OldestFirst):
            raise ValueError(f"remover: expected OldestFirst(), got {remover!r}")
        if max_size < 1:
            raise ValueError(f"max_size: expected >= 1, got {max_size}")
        if max_times_sampled < 0:
            raise ValueError(f"max_times_sampled: expected >= 0 (0: unlimited), "
                             f"got {max_times_sampled}")
        if not signature:
            raise ValueError("signature: expected at least one field")
        for field_name, spec in signature.items():
            if not isinstance(spec, FieldSpec):
                raise ValueError(f"signature.{field_name}: expected a FieldSpec, got {spec!r}")
        rate_limiter.validate(max_size)

        self.name = name
        self.selector = selector
        self.max_size = max_size
        self.rate_limiter = rate_limiter
        self.signature: dict[str, FieldSpec] = dict(signature)
        self.max_times_sampled = max_times_sampled

        self._gate = Gate(name)
        self._rng = np.random.default_rng(seed)
        self._allocate()

    @classmethod
    def from_spec(cls, spec: TableSpec) -> Table:
        return cls(spec.name, spec.selector, spec.remover, spec.max_size, spec.rate_limiter,
                   spec.signature, max_times_sampled=spec.max_times_sampled, seed=spec.seed)

    @classmethod
    def queue(cls, name: str, max_size: int, signature: Mapping[str, FieldSpec]) -> Table:
        """A FIFO queue: each item sampled exactly once, inserts wait while it is full."""
        return cls(name, Fifo(), OldestFirst(), max_size, Queue(max_size), signature,
                   max_times_sampled=1)

    def _allocate(self) -> None:
        self._store = ColumnStore(self.name, self.signature, self.max_size)
        self._keys = np.full(self.max_size, -1, dtype=np.int64)
        self._priorities = np.zeros(self.max_size, dtype=np.float64)
        self._times_sampled = np.zeros(self.max_size, dtype=np.int64)
        self._index = build_index(self.selector, self.max_size)
        self._next_key = 0
        self._size = 0
        self._inserted = 0
        self._sampled = 0
        self._priority_updates = 0
        self._max_priority = 1.0

    # ----------------------------------------------------------------- waiting

    def _counts(self) -> TableCounts:
        return TableCounts(self._size, self._inserted, self._sampled)

    def _may_insert(self, count: int) -> bool:
        return self.rate_limiter.can_insert(self._counts(), count)

    def _may_sample(self, batch_size: int) -> bool:
        needed = batch_size if self.selector.without_replacement else 1
        return self._size >= needed and self.rate_limiter.can_sample(self._counts(), batch_size)

    def can_insert(self, count: int) -> bool:
        """Whether ``insert`` of ``count`` items would store them now, without waiting: for
        a caller that drives both sides in one thread (a deterministic run)."""
        with self._gate.lock:
            return self._may_insert(count)

    def can_sample(self, batch_size: int) -> bool:
        """Whether ``sample(batch_size)`` would draw now, without waiting."""
        with self._gate.lock:
            return self._may_sample(batch_size)

    def _limiter_held(self) -> str:
        return f"the rate limiter ({self.rate_limiter.kind}); size {self._size}"

    def wake(self) -> None:
        """Makes waiting callers re-check their cancel events."""
        self._gate.wake()

    def close(self) -> None:
        """Releases every waiting caller with TableClosed; later waits fail at once."""
        self._gate.close()

    # ------------------------------------------------------------------ insert

    def check_fields(self, names: Collection[str]) -> None:
        """Raises InvalidItems unless ``names`` are exactly the signature's fields."""
        self._store.check_fields(names)

    def insert(
        self,
        columns: Mapping[str, Any],
        priorities: Any = None,
        *,
        frames: list[bytes] | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> np.ndarray:
        """Stores a batch of items whole, or raises and stores nothing; returns their keys.

        ``priorities`` (shape [items], finite, >= 0) are the initial priorities; without
        them each item gets the largest priority the table has seen (PER's rule).
        Frames fields are stacks, or FrameIndices into ``frames`` (compressed frames
        checked to decompress to one frame each, as the server passes them on).
        """
        items = self._store.validated(columns, priorities, frames)
        count, initial = items.item_count, items.priorities
        with self._gate.lock:
            self._gate.wait(lambda: self._may_insert(count), "insert", timeout, cancel,
                            self._limiter_held)
            keys = np.arange(self._next_key, self._next_key + count, dtype=np.int64)
            slots = keys % self.max_size
            start = int(slots[0])
            # Unless the run wraps round the ring, write it as one slice (10x cheaper than
            # scattering through an index array).
            where: slice | np.ndarray = (
                slice(start, start + count) if start + count <= self.max_size else slots)
            evicted = slots[self._keys[where] >= 0]
            if evicted.size:
                self._forget(evicted)
            self._store.write(where, items)
            if initial is None:
                initial = np.full(count, self._max_priority)
            elif count:
                self._max_priority = max(self._max_priority, float(initial.max()))
            self._keys[where] = keys
            self._priorities[where] = initial
            self._times_sampled[where] = 0
            self._index.insert(slots, initial)
            self._next_key += count
            self._size += count
            self._inserted += count
            self._gate.notify()
        return keys

    def _forget(self, slots: np.ndarray) -> None:
        """Removes live items at ``slots`` (held under the condition)."""
        self._index.remove(slots)
        self._keys[slots] = -1
        self._size -= slots.size
        self._store.forget(slots)

    # ------------------------------------------------------------------ sample

    def sample(
        self,
        batch_size: int,
        *,
        batches: int = 1,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        decompress: bool = True,
    ) -> Draw:
        """Draws a batch; waits while the rate limiter (or too few items) holds sampling.

        With ``batches`` > 1 it draws up to that many batches at once, concatenated (how
        the server samples ahead: one descent of the sum tree and one gather per field for
        several batches cost little more than for one). Each is a batch the rate limiter
        would have allowed one by one; ``len(keys) // batch_size`` says how many came.
        ``decompress=False`` returns compressed fields as stored (CompressedRows) and
        frames fields as FrameIndices into the draw's distinct frames, which the server
        sends on untouched.
        """
        if not 1 <= batch_size <= self.max_size:
            raise InvalidItems("batch_size", f"expected 1..max_size ({self.max_size}), "
                                             f"got {batch_size}")
        if batches < 1:
            raise InvalidItems("batches", f"expected >= 1, got {batches}")
        with self._gate.lock:
            self._gate.wait(lambda: self._may_sample(batch_size), "sample", timeout, cancel,
                            self._limiter_held)
            size = self._size
            count = self._batches_allowed(batch_size, batches)
            slots, probabilities = self._index.sample(count * batch_size, size, self._rng)
            if count > 1 and not self.selector.without_replacement:
                # Stratified draws come out in order of cumulative mass: shuffle them, so
                # each batch is a random part of the draw and not one stretch of it.
                order = self._rng.permutation(slots.size)
                slots, probabilities = slots[order], probabilities[order]
            keys = self._keys.take(slots)
            columns, frames = self._store.gather(slots)
            self._sampled += slots.size
            if self.max_times_sampled:
                np.add.at(self._times_sampled, slots, 1)
                spent = np.unique(slots[self._times_sampled[slots] >= self.max_times_sampled])
                if spent.size:
                    self._forget(spent)
            self._gate.notify()
        if decompress and (self._store.has_compressed or frames is not None):
            return Draw(keys, probabilities, self._store.decompressed(columns, frames))
        return Draw(keys, probabilities, columns, frames)

    def _batches_allowed(self, batch_size: int, wanted: int) -> int:
        """How many batches, up to ``wanted``, could be sampled one after another now."""
        allowed = 1
        while allowed < wanted:
            if self.selector.without_replacement and (allowed + 1) * batch_size > self._size:
                break
            after = TableCounts(self._size, self._inserted,
                                self._sampled + allowed * batch_size)
            if not self.rate_limiter.can_sample(after, batch_size):
                break
            allowed += 1
        return allowed

    # -------------------------------------------------------------- priorities

    def update_priorities(self, keys: Any, priorities: Any) -> tuple[int, int]:
        """Sets priorities of items still stored; returns (updated, ignored as evicted)."""
        keys = np.asarray(keys)
        if keys.ndim != 1 or keys.dtype.kind not in "iu":
            raise InvalidItems("keys", f"expected a 1-d integer array, got "
                                       f"{keys.dtype.name}{list(keys.shape)}")
        if keys.size and keys.min() < 0:
            raise InvalidItems("keys", "expected keys >= 0")
        checked = checked_priorities(priorities, keys.size)
        keys = keys.astype(np.int64, copy=False)
        with self._gate.lock:
            slots = keys % self.max_size
            live = self._keys[slots] == keys
            slots, checked = slots[live], checked[live]
            self._priorities[slots] = checked
            self._index.update(slots, checked)
            if checked.size:
                self._max_priority = max(self._max_priority, float(checked.max()))
            self._priority_updates += int(slots.size)
        return int(slots.size), int(keys.size - slots.size)

    # -------------------------------------------------------------------- info

    @property
    def size(self) -> int:
        return self._size

    def stats(self) -> TableStats:
        with self._gate.lock:
            counts, gate = self._counts(), self._gate
            return TableStats(
                name=self.name,
                size=self._size,
                max_size=self.max_size,
                selector=self.selector.describe(),
                max_times_sampled=self.max_times_sampled,
                inserted_items=self._inserted,
                sampled_items=self._sampled,
                priority_updates=self._priority_updates,
                stored_bytes=self._store.stored_bytes(self._size),
                stored_frames=0 if self._store.frames is None else len(self._store.frames),
                rate_limiter=self.rate_limiter.kind,
                insert_blocked_seconds=gate.blocked_seconds["insert"],
                sample_blocked_seconds=gate.blocked_seconds["sample"],
                inserts_waiting=gate.waiting["insert"],
                samples_waiting=gate.waiting["sample"],
                can_insert=self.rate_limiter.can_insert(counts, 1),
                can_sample=self._size >= 1 and self.rate_limiter.can_sample(counts, 1),
            )

    def sampled_item_bytes(self) -> int:
        """About what one sampled item takes on the wire (what a draw may hold follows)."""
        with self._gate.lock:
            return self._store.sampled_item_bytes(self._size)

    def signature_description(self) -> dict[str, str]:
        return {name: spec.describe() for name, spec in self.signature.items()}

    # -------------------------------------------------------------- checkpoint

    def state(self) -> TableState:
        """A copy of the live items (in key order) and counters, taken under the lock."""
        with self._gate.lock:
            live = np.flatnonzero(self._keys >= 0)
            live = live[np.argsort(self._keys[live], kind="stable")]
            arrays: dict[str, np.ndarray] = {
                "keys": self._keys[live],
                "priorities": self._priorities[live],
                "times_sampled": self._times_sampled[live],
                **self._store.state_arrays(live),
            }
            counters = {
                "next_key": self._next_key,
                "inserted": self._inserted,
                "sampled": self._sampled,
                "priority_updates": self._priority_updates,
                "max_priority": self._max_priority,
            }
            return TableState(arrays, counters, self.signature_description(), self.max_size)

    def check_restorable(self, state: TableState) -> None:
        if state.max_size != self.max_size or state.signature != self.signature_description():
            raise ValueError(
                f"table {self.name!r}: the checkpoint has max_size {state.max_size} and "
                f"signature {state.signature}, the table {self.max_size} and "
                f"{self.signature_description()}")

    def restore(self, state: TableState) -> None:
        """Replaces the contents with a saved state; the selector is rebuilt from the saved
        priorities, so sampling resumes with the same probabilities."""
        self.check_restorable(state)
        with self._gate.lock:
            self._allocate()
            keys = state.arrays["keys"].astype(np.int64)
            slots = keys % self.max_size
            self._store.restore(slots, state.arrays)
            self._keys[slots] = keys
            self._priorities[slots] = state.arrays["priorities"]
            self._times_sampled[slots] = state.arrays["times_sampled"]
            self._index.insert(slots, self._priorities[slots])
            self._size = int(keys.size)
            self._next_key = int(state.counters["next_key"])
            self._inserted = int(state.counters["inserted"])
            self._sampled = int(state.counters["sampled"])
            self._priority_updates = int(state.counters["priority_updates"])
            self._max_priority = float(state.counters["max_priority"])
            self._gate.lock.notify_all()


__all__ = [
    "ColumnValue",
    "CompressedRows",
    "Draw",
    "FieldSpec",
    "InvalidItems",
    "MinSize",
    "OldestFirst",
    "RateLimiterTimeout",
    "Table",
    "TableClosed",
    "TableState",
    "TableStats",
    "WaitCancelled",
]
