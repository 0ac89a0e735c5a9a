"""Policy lag: how many weight versions behind the newest were the items a learner trains on.

Off-policy learners tolerate lag, on-policy ones bound it; either way it is the first
thing to look at when actors fall behind the learner.
"""

from __future__ import annotations

import threading

import numpy as np

LAG_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Policy lag, in weight versions, of the items a learner trains on."""


class LagHistogram:
    """Bucket counts of policy lag, added a whole batch at a time (one numpy call per
    update instead of a Python call per item)."""

    def __init__(self, buckets: tuple[int, ...] = LAG_BUCKETS) -> None:
        self.buckets = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: +Inf
        self.total = 0.0
        self._lock = threading.Lock()

    def add(self, lags: np.ndarray) -> None:
        where = np.searchsorted(self.buckets, np.ravel(lags), side="left")  # le: <= bound
        counts = np.bincount(where, minlength=len(self.counts))
        with self._lock:
            self.counts += counts
            self.total += float(lags.sum())

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        with self._lock:
            cumulative = np.cumsum(self.counts)
            total = self.total
        bounds = [*(f"{b:g}" for b in self.buckets), "+Inf"]
        return list(zip(bounds, cumulative.astype(float).tolist(), strict=True)), total


def item_lags(versions: np.ndarray, newest: int) -> np.ndarray:
    """Each item's policy lag: that of its oldest step (a rollout may span a weight
    change). ``versions`` has the item axis first."""
    return newest - versions.reshape(len(versions), -1).min(axis=1)
