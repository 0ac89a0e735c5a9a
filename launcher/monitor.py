"""Watching a run while it goes: ``RunMonitor`` polls its components, logs what they
report (episodes, greedy evaluations, throughput, restarts), shows progress, applies scale
requests and the autoscaler's decisions, and says when the run is over (``Progress``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from shoal.actors.actor import Episode
from shoal.launcher import top
from shoal.launcher.autoscale import Autoscaler
from shoal.launcher.config import RunConfig
from shoal.launcher.control import ScaleRequests
from shoal.launcher.fleet import ActorFleet, ScaleResult
from shoal.launcher.launch import Handle
from shoal.launcher.lives import Lives
from shoal.launcher.rates import Rates, Samples, scrape
from shoal.launcher.run_dir import EventLog


class Progress:
    """Episodes and counters of a run; decides when it is over."""

    def __init__(self, run: RunConfig, events: EventLog) -> None:
        self.run = run
        self.events = events
        self.returns: deque[float] = deque(maxlen=run.return_window)
        self.env_steps = 0
        self.env_steps_before = 0  # a resumed run's steps so far
        self.updates = 0
        self.first_step_time: float | None = None
        self.eval_return: float | None = None       # the latest greedy evaluation's mean
        self.best_eval_return: float | None = None  # the best's (best.pt), resumed ones too

    def add_episodes(self, episodes: list[Episode]) -> None:
        """Each with the run's env steps when it was polled (``env_steps``; the actor's
        own count is ``actor_env_steps``)."""
        for episode in episodes:
            self.returns.append(episode.env_return)
            self.events.write("episode", actor=episode.actor, env_return=episode.env_return,
                              length=episode.length, actor_env_steps=episode.env_steps,
                              version=episode.version, env_steps=self.env_steps)

    def add_evaluations(self, results: list[dict[str, Any]], best: float | None) -> None:
        """The learner's new greedy evaluations: an event and a line on stderr each (they
        are rare, and the number a user waits for); ``best``: the learner's, after them."""
        for result in results:
            self.eval_return = result["mean_return"]
            self.best_eval_return = max(b for b in (self.best_eval_return, self.eval_return)
                                        if b is not None)
            self.events.write("evaluation", **result)
            kind = "final evaluation" if result.get("final") else "evaluation"
            print(f"{kind} at {result['env_steps']:,} env steps (version "
                  f"{result['version']}): mean greedy return {result['mean_return']:.1f} over "
                  f"{len(result['returns'])} episodes; best {self.best_eval_return:.1f}",
                  file=sys.stderr, flush=True)
        if best is not None:
            self.best_eval_return = best

    @property
    def mean_return(self) -> float | None:
        return statistics.fmean(self.returns) if self.returns else None

    @property
    def reached(self) -> bool:
        target = self.run.target_return
        return (target is not None and len(self.returns) == self.run.return_window
                and (self.mean_return or 0.0) >= target)

    @property
    def over(self) -> bool:
        return self.reached or self.env_steps >= self.run.total_env_steps

    def headline(self, actors: int, steps_per_s: float, updates_per_s: float,
                 now: float | None = None) -> str:
        """The progress line: env steps against the budget with an ETA at this life's mean
        rate since its first env step, the rates of the last interval, the actor count and
        the one training return (the mean of the target's window)."""
        now = time.time() if now is None else now
        budget = self.run.total_env_steps
        line = f"env steps {self.env_steps:,} of {budget:,} ({self.env_steps / budget:.0%}"
        this_life = self.env_steps - self.env_steps_before
        if self.first_step_time is not None and this_life > 0 and now > self.first_step_time:
            left = max(0, budget - self.env_steps) / (this_life / (now - self.first_step_time))
            line += f", ETA {_duration(left)}"
        mean = "-" if self.mean_return is None else f"{self.mean_return:.1f}"
        line += (f")  {steps_per_s:,.0f}/s  updates {self.updates:,} ({updates_per_s:,.0f}/s)"
                 f"  actors {actors}  mean return {mean}")
        if self.eval_return is not None:
            line += f"  eval {self.eval_return:.1f}"
        return line


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class RunMonitor:
    """Polls the components of a run, logs what they report, prints progress, applies
    scale requests, and says when the run is over. Works on local objects and on Ray actor
    handles alike, through ``call(handle, method, *args)`` (a plain call, or
    ``ray.get(handle.method.remote())``)."""

    def __init__(self, run: RunConfig, events: EventLog, call: Callable[..., Any],
                 replay: Handle, learner: Handle, fleet: ActorFleet, env_steps_before: int,
                 metrics: dict[str, str] | None = None,
                 scale_requests: ScaleRequests | None = None,
                 autoscaler: Autoscaler | None = None) -> None:
        self.progress = Progress(run, events)
        self._metrics = metrics or {}  # shoal instance -> /metrics address, for the view
        self.progress.env_steps_before = env_steps_before
        self._events = events
        self._call = call
        self._replay, self._learner, self._fleet = replay, learner, fleet
        self._scale_requests = scale_requests
        self._autoscaler = autoscaler
        self._lives = Lives()

    def poll(self) -> dict[str, Any]:
        progress = self.progress
        actors = self._fleet.poll()
        progress.env_steps = progress.env_steps_before + actors.env_steps
        progress.add_episodes(actors.episodes)
        progress.first_step_time = actors.first_step_time
        learner = self._call(self._learner, "poll", progress.env_steps)
        if learner["error"]:
            raise RuntimeError(f"learner failed: {learner['error']}")
        if self._lives.is_new("learner", learner["started"]):
            self._events.write("learner_restarted", pid=learner["pid"],
                               updates_before=progress.updates,
                               resumed_updates=learner["updates"],
                               resumed_counters=learner["resumed"])
        progress.updates = learner["updates"]
        progress.add_evaluations(learner.get("evaluations", []), learner.get("best_eval_return"))
        return learner

    def status(self) -> dict[str, int]:
        """For the control endpoint (read from its thread: plain ints)."""
        return {"actors": len(self._fleet), "env_steps": self.progress.env_steps,
                "updates": self.progress.updates, "pending_actors": self._fleet.pending}

    def run(self, report_every: float = 2.0, interval: float = 0.25) -> Progress:
        """Polls until the run is over. Every ``report_every`` seconds: a throughput event,
        and the view: a compact ``shoal top`` panel when stderr is a terminal, one plain
        line otherwise."""
        progress = self.progress
        last_report = time.monotonic()
        last_steps, last_updates = progress.env_steps, progress.updates
        scraped = scrape(self._metrics)
        live = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            live = Live(console=Console(stderr=True), auto_refresh=False)
            live.start()
        try:
            while True:
                time.sleep(interval)
                if self._scale_requests is not None:
                    self._scale_requests.apply_pending(self._scale)
                learner = self.poll()
                now = time.monotonic()
                if now - last_report >= report_every:
                    elapsed = now - last_report
                    steps_per_s = (progress.env_steps - last_steps) / elapsed
                    updates_per_s = (progress.updates - last_updates) / elapsed
                    rates, scraped = self._rates(scraped, elapsed)
                    self._log_throughput(learner, steps_per_s, updates_per_s, rates)
                    self._autoscale(now, scraped)
                    headline = progress.headline(len(self._fleet), steps_per_s, updates_per_s)
                    if live is not None:
                        live.update(top.compact(headline, rates), refresh=True)
                    else:
                        balance = "" if rates is None else (
                            f"  learner busy {rates.learner_busy:.0%}"
                            f"  actors blocked {rates.actors_blocked:.0%}")
                        print(headline + balance, file=sys.stderr, flush=True)
                    last_report, last_steps = now, progress.env_steps
                    last_updates = progress.updates
                if progress.over:
                    return progress
        finally:
            if live is not None:
                live.stop()

    def _scale(self, actors: int) -> ScaleResult:
        """A ``shoal scale`` request, said on the console as it is applied."""
        result = self._fleet.scale_to(actors)
        print(f"scale: actors {result.previous} -> {result.actors} (shoal scale)"
              + (f"; {result.pending_actors} waiting for Ray to place them"
                 if result.pending_actors else ""), file=sys.stderr, flush=True)
        return result

    def _autoscale(self, now: float, scraped: Samples) -> None:
        if self._autoscaler is None or self._fleet.pending:
            return  # an actor Ray has not started yet would add to nothing it measures
        decision = self._autoscaler.observe(now, scraped, len(self._fleet))
        if decision is None:  # a window still open, or settling after a change
            return
        self._events.write("autoscale", previous=decision.previous, actors=decision.actors,
                           changed=decision.changed, reason=decision.reason,
                           **decision.figures)
        change = (f"actors {decision.previous} -> {decision.actors}" if decision.changed
                  else f"keeping {decision.actors} actors")
        print(f"autoscale: {change}: {decision.reason}", file=sys.stderr, flush=True)
        if decision.changed:
            self._fleet.scale_to(decision.actors)

    def _rates(self, before: Samples, seconds: float) -> tuple[Rates | None,
                                                                   Samples]:
        if not self._metrics:
            return None, before
        after = scrape(self._metrics)
        return Rates.between(before, after, seconds), after

    def _log_throughput(self, learner: dict[str, Any], steps_per_s: float,
                        updates_per_s: float, rates: Rates | None) -> None:
        progress = self.progress
        replay = self._call(self._replay, "poll")
        if self._lives.is_new("replay", replay["started"]):
            self._events.write("replay_restarted", pid=replay["pid"],
                               restored_from=replay["restored_from"],
                               size=replay["size"], inserted_items=replay["inserted_items"])
        balance = {} if rates is None else {
            "learner_busy": rates.learner_busy, "learner_waiting": rates.learner_waiting,
            "actors_blocked": rates.actors_blocked, "policy_lag": rates.policy_lag}
        self._events.write(
            "throughput", env_steps=progress.env_steps, updates=progress.updates,
            actors=len(self._fleet), pending_actors=self._fleet.pending,
            env_steps_per_s=steps_per_s, updates_per_s=updates_per_s,
            mean_return=progress.mean_return, loss=learner["loss"],
            learner_wait_seconds=learner["wait_seconds"], learner_samples=learner["samples"],
            stale_dropped=learner["stale_dropped"],
            replay_size=replay["size"], replay_inserted=replay["inserted_items"],
            replay_sampled=replay["sampled_items"],
            insert_blocked_seconds=replay["insert_blocked_seconds"],
            sample_blocked_seconds=replay["sample_blocked_seconds"], **balance)
