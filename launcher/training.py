"""A training run, wired as the picture in docs/architecture.md: a replay service holding
the algorithm's table; a learner sampling from it and publishing weights on its
ParameterService; N actors writing to the replay service and following those weights.
``run`` reads top to bottom as that picture; how components start (threads here or Ray
actors) is the launch's (``launch.py``), watching the run the monitor's (``monitor.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.launcher.autoscale import Autoscaler
from shoal.launcher.components import (
    ActorComponent,
    LearnerComponent,
    ReplayComponent,
    Wiring,
    bind_host,
)
from shoal.launcher.config import TrainConfig, why_actor_count_is_fixed
from shoal.launcher.control import (
    ControlServer,
    ScaleRequests,
    remove_control_file,
    write_control_file,
)
from shoal.launcher.fleet import ActorFleet
from shoal.launcher.launch import Handle, Launch, LocalLaunch
from shoal.launcher.metrics import LauncherCollector
from shoal.launcher.monitor import Progress, RunMonitor
from shoal.launcher.run_dir import EventLog, remove_from_targets_index, write_prometheus_targets
from shoal.launcher.tensorboard import TensorBoardSink
from shoal.protos.exposition import MetricsServer
from shoal.protos.transport import Tls, new_token


@dataclass
class Summary:
    """The run's end; ``interrupted`` (Ctrl-C, SIGTERM) is logged but not in the JSON line."""

    reached: bool
    mean_return: float | None
    env_steps: int
    updates: int
    seconds_from_first_step: float
    seconds_total: float
    run_dir: str
    best_eval_return: float | None = None  # the best greedy evaluation's mean (best.pt)

    def line(self, interrupted: bool, window: int, target: float | None = None) -> str:
        mean = "n/a" if self.mean_return is None else f"{self.mean_return:.1f}"
        verdict = ("reached the target" if self.reached else
                   "interrupted" if interrupted else
                   "stopped at the step budget" if target is None else
                   f"stopped at the step budget short of the target {target:g}")
        best = ("" if self.best_eval_return is None
                else f" (best greedy evaluation {self.best_eval_return:.1f})")
        return (f"{verdict}: mean return {mean} over the last {window} episodes{best}, "
                f"{self.env_steps:,} env steps, {self.updates:,} updates, "
                f"{self.seconds_from_first_step:.1f}s from the first env step "
                f"({self.seconds_total:.1f}s in all); run directory {self.run_dir}")


def run(config: TrainConfig, run_dir: Path, launch: Launch, *, tls: Tls | None = None,
        resume: Path | None = None, started: float | None = None) -> tuple[Summary, bool]:
    """Wires and runs the picture: a replay service holding the algorithm's table; a learner
    sampling from it and publishing weights on its ParameterService; N actors writing to
    the replay service and following those weights.

    Returns the summary, and whether Ctrl-C (KeyboardInterrupt) ended the run early; the
    run then still stops its components in order and writes its checkpoint and summary.
    A component that fails ends the run with a ``failed`` event (its traceback in it) and
    the error raised. ``started`` is when the command started (its imports included);
    ``resume``: a run directory whose learner checkpoint the learner starts from."""
    started = started or time.time()
    interrupted = False
    name = run_dir.name
    wiring = Wiring(new_token(), launch.host, tls, name)
    run_dir.mkdir(parents=True, exist_ok=True)
    with EventLog(run_dir / "events.jsonl", sinks=[TensorBoardSink(run_dir)]) as events:
        replay = launch.start(ReplayComponent, config.table, config.replay, wiring,
                              str(run_dir / "replay"), restart=True)
        replay_address = launch.call(replay, "address")
        learner = launch.start(LearnerComponent, config, wiring, replay_address, str(run_dir),
                               str(resume) if resume else None, gpu=True, restart=True)
        parameters_address = launch.call(learner, "address")
        metrics = {"replay": launch.call(replay, "metrics_address"),
                   "learner": launch.call(learner, "metrics_address")}

        def start_actor(index: int, num_actors: int) -> Handle:
            return launch.start(ActorComponent, config, wiring, index, num_actors,
                                replay_address, parameters_address, restart=True, spread=True)

        fleet = ActorFleet(launch, start_actor, events, metrics,
                           on_metrics_change=lambda: write_prometheus_targets(run_dir, name,
                                                                              metrics),
                           max_actors=config.run.max_actors,
                           refuse_scaling=why_actor_count_is_fixed(config.definition))
        fleet.start(config.run.actors)
        resumed = launch.call(learner, "resumed_counters")
        local = isinstance(launch, LocalLaunch)
        events.write("start", settings=config.to_dict(), settings_from=config.settings,
                     resumed=resumed,
                     launch="local" if local else "ray", host=launch.host)
        if not local:  # which Ray node (and process) each component landed on
            placed = {part: launch.call(handle, "placement") for part, handle in
                      [("replay", replay), ("learner", learner),
                       *((f"actor-{i}", h) for i, h in sorted(fleet.handles.items()))]}
            events.write("placement", nodes={part: p["node"] for part, p in placed.items()},
                         pids={part: p["pid"] for part, p in placed.items()})
        scale_requests = ScaleRequests()
        bounds = config.run.autoscale_range
        autoscaler = None if bounds is None else Autoscaler(bounds, cores=launch.cores)
        monitor = RunMonitor(config.run, events, launch.call, replay, learner, fleet,
                             env_steps_before=int(resumed.get("env_steps", 0)),
                             metrics=metrics, scale_requests=scale_requests,
                             autoscaler=autoscaler)
        launcher_metrics = MetricsServer(LauncherCollector(
            lambda: len(fleet), lambda: autoscaler.decisions if autoscaler else {}, name),
            bind_host(launch.host))
        metrics["launcher"] = launcher_metrics.address
        write_prometheus_targets(run_dir, name, metrics)
        trained = False  # to its target or budget: its last weights are worth evaluating
        try:
            with ControlServer(wiring.token, scale_requests, monitor.status) as control, \
                    contextlib.closing(launcher_metrics):
                write_control_file(run_dir, control.address, wiring.token)
                progress = monitor.run()
                trained = True
        except KeyboardInterrupt:
            progress, interrupted = monitor.progress, True
        except Exception as error:
            write_failure(events, error, launch.call, {
                "learner": learner, **{f"actor-{i}": h for i, h in fleet.running().items()}})
            raise
        finally:
            remove_control_file(run_dir)
            remove_from_targets_index(run_dir)
            finished = launch.stop_all(replay, learner, fleet, final_evaluation=trained)
        ended = time.time()
        if finished is not None:
            progress.add_evaluations(finished["evaluations"], finished["best_eval_return"])
            ended -= sum(result["seconds"] for result in finished["evaluations"])  # not training
        summary = write_summary(events, progress, run_dir, started, ended, interrupted)
    return summary, interrupted


def write_summary(events: EventLog, progress: Progress, run_dir: Path, started: float,
                  ended: float, interrupted: bool) -> Summary:
    """The run's summary event, and the summary; ``ended``: when training ended (the time
    its final evaluations played taken off)."""
    summary = Summary(
        reached=progress.reached, mean_return=progress.mean_return,
        env_steps=progress.env_steps, updates=progress.updates,
        seconds_from_first_step=ended - (progress.first_step_time or ended),
        seconds_total=ended - started, run_dir=str(run_dir),
        best_eval_return=progress.best_eval_return)
    events.write("summary", **dataclasses.asdict(summary), interrupted=interrupted)
    return summary


def write_failure(events: EventLog, error: BaseException, call: Callable[..., Any],
                  components: dict[str, Handle]) -> None:
    """The ``failed`` event: the error that ended the run, the launcher's traceback, and
    the traceback of each component whose thread died (in a Ray actor's process: the
    launcher's traceback shows only the poll that found it dead)."""
    failed = {}
    for name, handle in components.items():
        with contextlib.suppress(Exception):  # one that cannot answer has nothing to add
            failure = call(handle, "failure")
            if failure is not None:
                failed[name] = failure
    events.write("failed", error=f"{type(error).__name__}: {error}",
                 traceback="".join(traceback.format_exception(error)), components=failed)
