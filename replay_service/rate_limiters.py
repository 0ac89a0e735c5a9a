"""Rate limiters: when a table lets an insert or a sample go ahead, and when it blocks it.

The limiter is what holds the CPU/GPU balance: it blocks the faster side (actors
inserting, or the learner sampling) instead of letting the learner overfit a tiny buffer
or the actors flood it. Limiters are stateless specs; the table passes them its counters.
A blocked side waits on the table until the other side moves it, or its timeout ends.

Checks look at the state before an operation, and an operation moves whole batches, so a
side may overshoot a bound by one batch; that is what guarantees no deadlock with batches
larger than the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol


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
