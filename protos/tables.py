"""A replay table's spec: the one description of a table, in Reverb's declarative style.

Algorithms return one (``Algorithm.table``), the replay server's tables YAML parses into
one (``replay_service/config.py``), ``shoal tables`` prints one, and the replay service
builds its ``Table`` from one. It is data every room may hold (the algorithms may not
import the replay service): which items a sample returns (the selector), when inserts and
samples may go ahead (the rate limiter, whose rules are pure functions of the table's
counters), what an item holds (the signature) and how often it may be sampled. How the
service stores, indexes and waits is the replay service's own.

    TableSpec(name="transitions", max_size=100_000, selector=Prioritized(alpha=0.6),
              rate_limiter=SampleToInsertRatio(samples_per_insert=32, min_size_to_sample=500,
                                               error_buffer=65_536),
              signature={"obs": FieldSpec("float32", (4,)), "action": FieldSpec("int64")})

Rate limiters block the faster side (actors inserting, or the learner sampling) instead of
letting the learner overfit a tiny buffer or the actors flood it. Checks look at the state
before an operation, and an operation moves whole batches, so a side may overshoot a bound
by one batch; that is what guarantees no deadlock with batches larger than the tolerance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from shoal.protos.codec import COMPRESSION_TO_WIRE, CodecError, CompressionName, wire_dtype

# ------------------------------------------------------------------------------ signature


@dataclass(frozen=True)
class FieldSpec:
    """One column of a table's signature: the dtype and shape of a single item."""

    dtype: np.dtype | str
    shape: tuple[int, ...] = ()
    compression: CompressionName = "none"
    frames: bool = False
    """A stack of frames ([..., stack, H, W], Atari's [4, 84, 84]): the table keeps each
    distinct frame once, compressed, and an item only the ids of its frames (int32, the
    shape without the last two axes), so a DQN transition's obs and next_obs, 8 frames of
    which 1 is new, cost about one frame. Stacks are rebuilt when sampled."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "dtype", wire_dtype(self.dtype))
        except (CodecError, TypeError) as error:
            raise ValueError(f"dtype: {error}") from None
        shape = tuple(int(dim) for dim in self.shape)
        if any(dim < 0 for dim in shape):
            raise ValueError(f"shape: expected non-negative dimensions, got {list(shape)}")
        object.__setattr__(self, "shape", shape)
        if self.compression not in COMPRESSION_TO_WIRE:
            raise ValueError(f"compression: expected one of {sorted(COMPRESSION_TO_WIRE)}, "
                             f"got {self.compression!r}")
        if self.frames and (len(shape) < 3 or self.compression == "none"):
            raise ValueError(f"frames: expected a compressed field of shape [..., stack, H, W], "
                             f"got {self.describe()}")

    @property
    def row_bytes(self) -> int:
        """One item's bytes as samples return it (a frames field: its whole stack)."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.shape[-2:]

    @property
    def ids_shape(self) -> tuple[int, ...]:
        """Per item, the frame ids a frames field keeps in place of its stack."""
        return self.shape[:-2]

    def to_dict(self) -> dict[str, Any]:
        """As the tables YAML writes a field."""
        compression = {} if self.compression == "none" else {"compression": self.compression}
        frames = {"frames": True} if self.frames else {}
        return {"dtype": np.dtype(self.dtype).name, "shape": list(self.shape), **compression,
                **frames}

    def describe(self) -> str:
        how = [self.compression] if self.compression != "none" else []
        suffix = f" ({', '.join([*how, 'frames'] if self.frames else how)})" if how else ""
        return f"{np.dtype(self.dtype).name}{list(self.shape)}{suffix}"



class FrameKind(NamedTuple):
    """The frames a table's frames fields share: one store per table holds them all."""

    shape: tuple[int, ...]
    dtype: np.dtype
    compression: CompressionName

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def frame_kind(signature: Mapping[str, FieldSpec]) -> FrameKind | None:
    """What the frames fields' frames are (None: the table has none); ValueError naming
    the field when two of them disagree (obs and next_obs share their frames)."""
    kinds = {name: FrameKind(spec.frame_shape, np.dtype(spec.dtype), spec.compression)
             for name, spec in signature.items() if spec.frames}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"signature: frames fields must agree on frame shape, dtype and "
                         f"compression, got {kinds}")
    return next(iter(kinds.values()), None)


# ------------------------------------------------------------------------------ selectors


@dataclass(frozen=True)
class Prioritized:
    """P(i) = p_i^alpha / sum_k p_k^alpha over a sum tree (Schaul et al., 2016).

    alpha = 0 is uniform, alpha = 1 fully proportional to priority.
    """

    alpha: float = 0.6
    without_replacement = False
    kind = "prioritized"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha: expected a number in [0, 1], got {self.alpha}")

    def describe(self) -> str:
        return f"prioritized(alpha={self.alpha:g})"


@dataclass(frozen=True)
class Uniform:
    """P(i) = 1 / size over the live items, with replacement."""

    without_replacement = False
    kind = "uniform"

    def describe(self) -> str:
        return "uniform"


@dataclass(frozen=True)
class Fifo:
    """The ``count`` oldest items, oldest first; with max_times_sampled=1, a queue."""

    without_replacement = True
    kind = "fifo"

    def describe(self) -> str:
        return "fifo"


Selector = Prioritized | Uniform | Fifo


@dataclass(frozen=True)
class OldestFirst:
    """The only remover: at capacity the ring overwrites the oldest slots.

    With max_times_sampled, items leave before they are oldest and their slots stay empty
    until the ring comes round again, so such a table can hold fewer than max_size items.
    """


# --------------------------------------------------------------------------- rate limiters


class TableCounts(NamedTuple):
    size: int      # items stored now
    inserted: int  # items ever inserted
    sampled: int   # items ever returned by samples (a batch of 256 counts 256)


class RateLimiter(Protocol):
    kind: str

    def can_insert(self, counts: TableCounts, items: int) -> bool: ...
    def can_sample(self, counts: TableCounts, items: int) -> bool: ...
    def validate(self, max_size: int) -> None:
        """Raises ValueError naming the argument when the limiter cannot work with max_size."""
        ...


@dataclass(frozen=True)
class MinSize:
    """Sampling waits until size >= min_size; inserts never wait."""

    min_size: int = 1
    kind = "min_size"

    def can_insert(self, counts: TableCounts, items: int) -> bool:
        return True

    def can_sample(self, counts: TableCounts, items: int) -> bool:
        return counts.size >= self.min_size

    def validate(self, max_size: int) -> None:
        if not 1 <= self.min_size <= max_size:
            raise ValueError(f"min_size: expected 1..max_size ({max_size}), got {self.min_size}")


@dataclass(frozen=True)
class SampleToInsertRatio:
    """Holds samples per inserted item near ``samples_per_insert`` (Reverb's limiter).

    With diff = inserted * samples_per_insert - sampled and
    offset = samples_per_insert * min_size_to_sample:

    - insert may proceed when  diff <= offset + error_buffer
    - sample may proceed when  size >= min_size_to_sample and diff >= offset - error_buffer

    so the learner can never run more than ``error_buffer`` sampled items ahead of the
    ratio, nor the actors more than ``error_buffer / samples_per_insert`` items behind it.
    """

    samples_per_insert: float
    min_size_to_sample: int
    error_buffer: float
    kind = "sample_to_insert_ratio"

    def _diff(self, counts: TableCounts) -> float:
        return counts.inserted * self.samples_per_insert - counts.sampled

    @property
    def _offset(self) -> float:
        return self.samples_per_insert * self.min_size_to_sample

    def can_insert(self, counts: TableCounts, items: int) -> bool:
        return self._diff(counts) <= self._offset + self.error_buffer

    def can_sample(self, counts: TableCounts, items: int) -> bool:
        return (
            counts.size >= self.min_size_to_sample
            and self._diff(counts) >= self._offset - self.error_buffer
        )

    def validate(self, max_size: int) -> None:
        if not self.samples_per_insert > 0:
            raise ValueError(
                f"samples_per_insert: expected > 0, got {self.samples_per_insert}")
        if not 1 <= self.min_size_to_sample <= max_size:
            raise ValueError(f"min_size_to_sample: expected 1..max_size ({max_size}), "
                             f"got {self.min_size_to_sample}")
        if not self.error_buffer >= max(1.0, self.samples_per_insert):
            raise ValueError(f"error_buffer: expected >= max(1, samples_per_insert) = "
                             f"{max(1.0, self.samples_per_insert):g}, got {self.error_buffer}")


@dataclass(frozen=True)
class Queue:
    """A bounded queue: insert waits while size + items > max_size; sample needs one item.

    Unlike eviction at capacity, nothing unsampled is ever overwritten, which is what
    on-policy rollouts (sampled exactly once) need.
    """

    max_size: int
    kind = "queue"

    def can_insert(self, counts: TableCounts, items: int) -> bool:
        return counts.size + items <= self.max_size

    def can_sample(self, counts: TableCounts, items: int) -> bool:
        return counts.size >= 1

    def validate(self, max_size: int) -> None:
        if self.max_size != max_size:
            raise ValueError(f"max_size: the Queue limiter's {self.max_size} must equal the "
                             f"table's {max_size}")


Limiter = MinSize | SampleToInsertRatio | Queue


# --------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class TableSpec:
    """A whole table. Checked as it is made, so a table no replay service could build is
    refused where it was described, naming the field."""

    name: str
    max_size: int
    signature: Mapping[str, FieldSpec]
    selector: Selector = field(default_factory=Uniform)
    rate_limiter: Limiter = field(default_factory=MinSize)
    max_times_sampled: int = 0   # 0: unlimited
    remover: OldestFirst = field(default_factory=OldestFirst)  # the only one there is
    seed: int | None = None      # seeds the sampling (None: fresh entropy)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: expected a non-empty table name")
        if self.max_size < 1:
            raise ValueError(f"max_size: expected >= 1, got {self.max_size}")
        if self.max_times_sampled < 0:
            raise ValueError(f"max_times_sampled: expected >= 0 (0: unlimited), "
                             f"got {self.max_times_sampled}")
        if not self.signature:
            raise ValueError("signature: expected at least one field")
        if not isinstance(self.remover, OldestFirst):
            raise ValueError(f"remover: expected OldestFirst(), got {self.remover!r}")
        for name, spec in self.signature.items():
            if not isinstance(spec, FieldSpec):
                raise ValueError(f"signature.{name}: expected a FieldSpec, got {spec!r}")
        frame_kind(self.signature)
        self.rate_limiter.validate(self.max_size)
        object.__setattr__(self, "signature", dict(self.signature))

    @classmethod
    def queue(cls, name: str, max_size: int, signature: Mapping[str, FieldSpec],
              seed: int | None = None) -> TableSpec:
        """A FIFO queue: each item sampled exactly once, inserts wait while it is full."""
        return cls(name, max_size, signature, Fifo(), Queue(max_size), max_times_sampled=1,
                   seed=seed)

    @property
    def is_queue(self) -> bool:
        return (isinstance(self.selector, Fifo) and isinstance(self.rate_limiter, Queue)
                and self.max_times_sampled == 1)

    def seeded(self, seed: int | None) -> TableSpec:
        return dataclasses.replace(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """The ``tables:`` entry of the replay server's YAML (``replay_service/config.py``
        parses it back into an equal spec)."""
        signature = {name: spec.to_dict() for name, spec in self.signature.items()}
        seed = {} if self.seed is None else {"seed": self.seed}
        if self.is_queue:
            return {"name": self.name, "queue": True, "max_size": self.max_size,
                    "signature": signature, **seed}
        return {"name": self.name, "max_size": self.max_size,
                "selector": {"type": self.selector.kind, **dataclasses.asdict(self.selector)},
                "rate_limiter": {"type": self.rate_limiter.kind,
                                 **dataclasses.asdict(self.rate_limiter)},
                "max_times_sampled": self.max_times_sampled, "signature": signature, **seed}
