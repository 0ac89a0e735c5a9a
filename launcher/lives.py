"""Telling a component's lives apart: each poll carries the time its process's component
started, so a poll with another start time comes from a new life (Ray restarted it after
a crash). The monitor (replay service, learner) and the fleet (actors) ask alike."""

from __future__ import annotations


class Lives:
    def __init__(self) -> None:
        self._started: dict[str, float] = {}  # component -> when its current life started

    def is_new(self, component: str, started: float) -> bool:
        """Whether this poll's ``started`` begins a new life of ``component`` (the first
        poll of a component is its first life, not a new one)."""
        previous = self._started.setdefault(component, started)
        self._started[component] = started
        return previous != started

    def forget(self, component: str) -> None:
        """A removed component: an index reused later is a first life again."""
        self._started.pop(component, None)
