"""A table's lock and the waits it imposes: callers hold ``lock`` while they look at or
change the table, and ``wait`` releases it until their condition holds (the rate limiter
allows them), the wait is cancelled, its timeout passes or the table closes. The time each
side spends waiting, and how many wait now, are the table's stats (and the replay
service's blocked-seconds metric), so they are counted here where the waiting is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from shoal.replay_service.items import RateLimiterTimeout, TableClosed, WaitCancelled

Side = Literal["insert", "sample"]


class Gate:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self.lock = threading.Condition()
        self.closed = False
        self.blocked_seconds: dict[Side, float] = {"insert": 0.0, "sample": 0.0}
        self.waiting: dict[Side, int] = {"insert": 0, "sample": 0}

    def wait(self, ready: Callable[[], bool], side: Side, timeout: float | None,
             cancel: threading.Event | None, why: Callable[[], str]) -> None:
        """Waits (``lock`` held) until ``ready()``; charges the time to ``side``. ``why``
        says, for the timeout's message, what held it."""
        if ready() and not self.closed:
            return
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        self.waiting[side] += 1
        try:
            while True:
                if self.closed:
                    raise TableClosed(f"table {self.table_name!r} is closed")
                if ready():
                    return
                if cancel is not None and cancel.is_set():
                    raise WaitCancelled(f"{side} on table {self.table_name!r} was cancelled")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RateLimiterTimeout(
                        f"{side} on table {self.table_name!r} waited {timeout:g}s for {why()}")
                self.lock.wait(remaining)
        finally:
            self.waiting[side] -= 1
            self.blocked_seconds[side] += time.monotonic() - start

    def notify(self) -> None:
        """After a change (``lock`` held): wakes waiting callers, only if there are any."""
        if self.waiting["insert"] or self.waiting["sample"]:
            self.lock.notify_all()

    def wake(self) -> None:
        """Makes waiting callers re-check their cancel events."""
        with self.lock:
            self.lock.notify_all()

    def close(self) -> None:
        """Releases every waiting caller with TableClosed; later waits fail at once."""
        with self.lock:
            self.closed = True
            self.lock.notify_all()
