"""``--autoscale MIN:MAX``: the actor count that keeps the learner busy without making
actors queue for it, decided from the metrics the run's processes already export.

The replay service's rate limiter holds the samples-per-insert ratio whatever the count,
so the count only decides which side waits: with too few actors the learner waits for
batches (add one), with too many the actors sit blocked on insert (remove one). Each
decision looks at one window of rates (``Rates.between`` two scrapes), and a change is
followed by a settling time before the next window opens, so new actors' start-up and the
table's catching up do not count as the new count's figures. Every window ends in a
Decision, a kept count included, with its figures and the reason: the run logs each one
and says it on the console, so a count that does not move says why.

A change is judged by what it did: the first window after it is set against the last one
before it, and a change after which neither env steps/s nor updates/s rose by ``margin``
is undone, its count remembered as one that does not help (on 2 cores a fourth actor
added nothing: actors fight the learner and the replay process for the cores). The
CPUs the run shares (``cores``: the machine's, or the Ray cluster's) do not cap the count:
on 2 cores a third actor gave 16-24 % more env steps/s than two in some runs and under 5 %
in others. An addition that puts more processes than CPUs on them says so in its reason,
and stands only if it pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoal.launcher.rates import Rates, Samples


@dataclass(frozen=True)
class AutoscaleRange:
    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> AutoscaleRange:
        """``MIN:MAX``, 1 <= MIN <= MAX; ValueError naming what is wrong."""
        low, sep, high = text.partition(":")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"expected MIN:MAX actor counts, e.g. 1:8, got {text!r}")
        bounds = cls(int(low), int(high))
        if not 1 <= bounds.low <= bounds.high:
            raise ValueError(f"expected 1 <= MIN <= MAX, got {text!r}")
        return bounds

    def __str__(self) -> str:
        return f"{self.low}:{self.high}"


@dataclass(frozen=True)
class Decision:
    previous: int
    actors: int   # == previous: the count is kept, for ``reason``
    reason: str
    figures: dict[str, Any]

    @property
    def changed(self) -> bool:
        return self.actors != self.previous


OTHER_PROCESSES = 2
"""The learner and the replay service: each keeps a core busy beside the actors."""


class Autoscaler:
    """Feed it every scrape (``observe``); it answers with a Decision when a window ends.
    ``busy_target``: the learner's share of time in updates it aims for; ``blocked_limit``:
    the actors' share of time blocked on insert that means too many."""

    def __init__(self, bounds: AutoscaleRange, *, busy_target: float = 0.9,
                 blocked_limit: float = 0.5, window_seconds: float = 10.0,
                 settle_seconds: float = 10.0, margin: float = 0.05,
                 cores: float | None = None) -> None:
        self.bounds = bounds
        self.margin = margin
        self.cores = cores
        self._ceiling = bounds.high  # lowered by an addition that did not help
        self._floor = bounds.low     # raised by a removal that cost throughput
        self._last: tuple[int, Rates] | None = None  # the last window's count and rates
        self.busy_target = busy_target
        self.blocked_limit = blocked_limit
        self.window_seconds = window_seconds
        self.settle_seconds = settle_seconds
        self._window_start: tuple[float, Samples] | None = None
        self._quiet_until = 0.0
        self.decisions = {"up": 0, "down": 0}

    def observe(self, now: float, samples: Samples, actors: int) -> Decision | None:
        if now < self._quiet_until:
            return None
        if self._window_start is None:
            self._window_start = (now, samples)
            return None
        started, before = self._window_start
        if now - started < self.window_seconds:
            return None
        self._window_start = (now, samples)
        decision = self.decide(Rates.between(before, samples, now - started), actors)
        if decision.changed:
            self.decisions["up" if decision.actors > decision.previous else "down"] += 1
            self._window_start = None
            self._quiet_until = now + self.settle_seconds
        return decision

    def decide(self, rates: Rates, actors: int) -> Decision:
        """The rule, on one window's rates."""
        waiting_limit = 1.0 - self.busy_target
        figures = {"learner_busy": round(rates.learner_busy, 3),
                   "learner_waiting": round(rates.learner_waiting, 3),
                   "actors_blocked": round(rates.actors_blocked, 3),
                   "env_steps_per_s": round(rates.env_steps_per_s_total, 1),
                   "updates_per_s": round(rates.updates_per_s, 1),
                   "samples_per_insert": (None if rates.samples_per_insert is None
                                          else round(rates.samples_per_insert, 2)),
                   "window_seconds": round(rates.seconds, 1), "cores": self.cores}
        starved = (rates.learner_busy < self.busy_target
                   and rates.learner_waiting > waiting_limit)
        crowded = (rates.actors_blocked >= self.blocked_limit
                   and rates.learner_waiting <= waiting_limit)
        waited = (f"the learner waited {rates.learner_waiting:.0%} of the time for data (busy "
                  f"{rates.learner_busy:.0%} < {self.busy_target:.0%})")
        blocked = (f"actors sat blocked on insert {rates.actors_blocked:.0%} of the time while "
                   f"the learner waited {rates.learner_waiting:.0%}")
        judged = self._judged(rates, actors, figures)
        # an undoing is not judged in turn: the count it returns to was judged already
        self._last = None if judged is not None else (actors, rates)
        if judged is not None:
            return judged
        if starved and rates.actors_blocked < self.blocked_limit:
            return self._added(actors, waited, figures)
        if crowded:
            if actors > self._floor:
                return Decision(actors, actors - 1, blocked, figures)
            limit = "MIN" if self._floor == self.bounds.low else "the fewest that kept pace"
            return Decision(actors, actors, f"{blocked}, but {actors} is {limit}", figures)
        if starved:  # and blocked: round trips hold both sides, not the count
            return Decision(actors, actors, f"both sides wait (learner "
                            f"{rates.learner_waiting:.0%}, actors {rates.actors_blocked:.0%}): "
                            f"the count is not what holds them", figures)
        return Decision(actors, actors, f"balanced: learner busy {rates.learner_busy:.0%}, "
                        f"actors blocked {rates.actors_blocked:.0%}", figures)

    def _added(self, actors: int, waited: str, figures: dict[str, Any]) -> Decision:
        if actors >= self._ceiling:
            limit = ("MAX" if self._ceiling == self.bounds.high
                     else "the most that helped (adding one did not raise throughput)")
            return Decision(actors, actors, f"{waited}, but {actors} is {limit}", figures)
        if self.cores is not None and actors + 1 + OTHER_PROCESSES > self.cores:
            waited += (f"; {actors + 1} actors, the learner and the replay service are more "
                       f"processes than the {self.cores:g} CPUs: kept only if it pays")
        return Decision(actors, actors + 1, waited, figures)

    def _judged(self, rates: Rates, actors: int, figures: dict[str, Any]) -> Decision | None:
        """The first window after a change against the last one before it: the change
        undone (and its count barred) when it did not pay, None otherwise."""
        if self._last is None or self._last[0] == actors:
            return None
        before_actors, before = self._last
        steps = _change(before.env_steps_per_s_total, rates.env_steps_per_s_total)
        updates = _change(before.updates_per_s, rates.updates_per_s)
        said = (f"{actors} actors gave {rates.env_steps_per_s_total:,.0f} env steps/s and "
                f"{rates.updates_per_s:.1f} updates/s against {before.env_steps_per_s_total:,.0f}"
                f" and {before.updates_per_s:.1f} at {before_actors} ({steps:+.1%}, "
                f"{updates:+.1%}")
        figures.update(env_steps_change=round(steps, 3), updates_change=round(updates, 3))
        if actors > before_actors and max(steps, updates) < self.margin:
            self._ceiling = before_actors
            return Decision(actors, before_actors, f"{said}; a rise of {self.margin:.0%} "
                            f"was needed): back to {before_actors}, the most that helps",
                            figures)
        if actors < before_actors and min(steps, updates) < -self.margin:
            self._floor = before_actors
            return Decision(actors, before_actors, f"{said}; a fall of more than "
                            f"{self.margin:.0%}): back to {before_actors}", figures)
        return None


def _change(before: float, after: float) -> float:
    """``after`` relative to ``before`` (0 when both are 0)."""
    if before <= 0:
        return 0.0 if after <= 0 else 1.0
    return after / before - 1.0
