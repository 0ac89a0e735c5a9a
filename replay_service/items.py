"""What crosses a table's edge: the errors it raises, the draws and stats it hands out,
the state a checkpoint keeps, and the check every priority passes on its way in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class InvalidItems(ValueError):
    """Items, keys or priorities that do not fit the table; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RateLimiterTimeout(TimeoutError):
    """The rate limiter kept an insert or sample waiting longer than its timeout."""


class WaitCancelled(RuntimeError):
    """The caller's cancel event was set while it waited (its RPC ended)."""


class TableClosed(RuntimeError):
    """The table is shutting down; waiting callers are released with this."""


@dataclass(frozen=True)
class CompressedRows:
    """Items of a compressed field, one blob per item, already checked to decompress to
    the field's row size (the server checks on arrival; the table compresses arrays)."""

    rows: list[bytes]


@dataclass(frozen=True)
class FrameIndices:
    """A frames field's items as int32 indices [items, *ids_shape] into the frames that
    came with them (an insert's message, a draw's distinct frames)."""

    indices: np.ndarray


ColumnValue = np.ndarray | CompressedRows | FrameIndices


class CheckedInsert(NamedTuple):
    """An insert that passed every check, as a table writes it."""

    item_count: int
    columns: dict[str, ColumnValue]
    priorities: np.ndarray | None
    frames: list[bytes] | None  # the compressed frames the FrameIndices point into


class Draw(NamedTuple):
    """Items drawn from a table, as the server sends them on (the client's ``SampleBatch``
    once decoded, the learner's ``DeviceBatch`` once on its device). Importance weights
    are the learner's to compute from ``probabilities``: their exponent anneals with its
    updates."""

    keys: np.ndarray           # int64 [B], for update_priorities
    probabilities: np.ndarray  # float64 [B], P(i) when drawn
    columns: dict[str, ColumnValue]
    frames: CompressedRows | None = None  # the distinct frames FrameIndices point into


@dataclass
class TableStats:
    name: str
    size: int
    max_size: int
    selector: str
    max_times_sampled: int
    inserted_items: int
    sampled_items: int
    priority_updates: int
    stored_bytes: int
    stored_frames: int  # distinct frames kept for the frames fields
    rate_limiter: str
    insert_blocked_seconds: float
    sample_blocked_seconds: float
    inserts_waiting: int  # callers blocked right now, by side
    samples_waiting: int
    can_insert: bool
    can_sample: bool


@dataclass
class TableState:
    """Everything a checkpoint needs to rebuild a table: live items in key order, counters."""

    arrays: dict[str, np.ndarray]
    counters: dict[str, float] = field(default_factory=dict)
    signature: dict[str, str] = field(default_factory=dict)
    max_size: int = 0


def checked_priorities(priorities: Any, count: int) -> np.ndarray:
    array = np.asarray(priorities)
    if array.shape != (count,) or array.dtype.kind not in "fiu":
        raise InvalidItems("priorities", f"expected {count} numbers, got "
                                         f"{array.dtype.name}{list(array.shape)}")
    array = array.astype(np.float64, copy=False)
    if count:
        # One reduction finds NaN and infinity (they make the sum non-finite), one the sign.
        if not math.isfinite(float(np.add.reduce(array))) and not np.isfinite(array).all():
            raise InvalidItems("priorities", "expected finite numbers, got NaN or infinity")
        smallest = float(array.min())
        if smallest < 0:
            raise InvalidItems("priorities", f"expected numbers >= 0, got {smallest:g}")
    return array
