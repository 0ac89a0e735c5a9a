"""Selectors: which stored items a sample returns, and with what probability.

A selector is a small frozen spec of ``protos/tables.py`` (``Prioritized(alpha=0.6)``,
``Uniform()``, ``Fifo()``) that a Table builds (``build_index``) into an index over its
ring's slots. The index hears of every insert,
removal and priority update by slot, and answers ``sample(n)`` with slots and P(slot).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from shoal.protos.tables import Fifo, Prioritized, Selector, Uniform
from shoal.replay_service.sum_tree import SumTree


class SelectorIndex(Protocol):
    """What a Table asks of a built selector. Slots are positions in the table's ring."""

    def insert(self, slots: np.ndarray, priorities: np.ndarray) -> None: ...
    def remove(self, slots: np.ndarray) -> None: ...
    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None: ...
    def sample(
        self, count: int, size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``count`` slots and the probability each had of being drawn."""
        ...


class _SumTreeIndex:
    """Draws slots in proportion to a per-slot mass: p^alpha, or 1 for every live slot."""

    def __init__(self, capacity: int, alpha: float | None) -> None:
        self._tree = SumTree(capacity)
        self._alpha = alpha

    def _mass(self, priorities: np.ndarray) -> np.ndarray | float:
        if self._alpha is None:
            return 1.0
        return np.power(priorities, self._alpha)

    def _set(self, slots: np.ndarray, mass: np.ndarray | float) -> None:
        # Ring inserts, and the evictions before them, touch one run of slots.
        if slots.size > 1 and slots[-1] - slots[0] == slots.size - 1:
            self._tree.set_run(int(slots[0]), slots.size, mass)
        else:
            self._tree.set(slots, mass)

    def insert(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        self._set(slots, self._mass(priorities))

    def remove(self, slots: np.ndarray) -> None:
        self._set(slots, 0.0)

    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        if self._alpha is not None:
            self._tree.set(slots, self._mass(priorities))

    def sample(
        self, count: int, size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._tree.sample(count, rng)


class _FifoIndex:
    """The oldest live items, in insertion order. Removal only ever happens at the head
    (eviction of the oldest, or the oldest reaching max_times_sampled), so a head pointer
    and a count over the ring describe the live items exactly."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._head = 0
        self._count = 0

    def insert(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        if self._count == 0 and slots.size:
            self._head = int(slots[0])
        self._count += slots.size

    def remove(self, slots: np.ndarray) -> None:
        self._head = (self._head + slots.size) % self._capacity
        self._count -= slots.size

    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        pass

    def sample(
        self, count: int, size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        slots = (self._head + np.arange(count)) % self._capacity
        return slots, np.full(count, 1.0 / size)


def build_index(selector: Selector, capacity: int) -> SelectorIndex:
    """The index a table keeps for ``selector`` over a ring of ``capacity`` slots."""
    if isinstance(selector, Prioritized):
        return _SumTreeIndex(capacity, selector.alpha)
    if isinstance(selector, Uniform):
        return _SumTreeIndex(capacity, None)
    if isinstance(selector, Fifo):
        return _FifoIndex(capacity)
    raise ValueError(f"selector: expected Prioritized, Uniform or Fifo, got {selector!r}")
