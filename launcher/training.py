"""What a training run is, whatever runs it: its settings, the wiring of the picture in
DESIGN.md, watching progress, and the summary it ends with.

The wiring, read top to bottom, is the picture: a replay service with the algorithm's
table; a learner that samples from it and publishes weights on its ParameterService; N
actors that write to the replay service and follow those weights. ``run_local`` runs them
as threads of this process (still gRPC over loopback).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shoal.actors.actor import Actor, Episode
from shoal.actors.envs import env_spec, make_env
from shoal.actors.weights import WeightFollower
from shoal.algorithms.registry import ALGORITHMS
from shoal.launcher.run_dir import EventLog
from shoal.learner.checkpoint import load_checkpoint
from shoal.learner.learner import LearnerLoop
from shoal.learner.parameter_service import ParameterServer
from shoal.replay_service.auth import new_token
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.config import table_from_dict
from shoal.replay_service.server import ReplayServer

RETURN_WINDOW = 20  # the target is the mean of the last 20 training episodes


@dataclass
class TrainSettings:
    algo: str
    env_id: str
    actors: int = 2
    envs_per_actor: int = 8
    seed: int = 0
    total_env_steps: int = 200_000
    target_return: float | None = None
    run_dir: Path = Path("runs")
    resume: Path | None = None
    config: Any = None             # the algorithm's config dataclass, overrides applied

    def resolved(self) -> dict[str, Any]:
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name != "config"}
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}
        return {**settings, "algorithm_config": dataclasses.asdict(self.config)}


@dataclass
class Summary:
    reached: bool
    mean_return: float | None
    env_steps: int
    updates: int
    seconds_from_first_step: float
    seconds_total: float
    run_dir: str

    def line(self) -> str:
        mean = "n/a" if self.mean_return is None else f"{self.mean_return:.1f}"
        verdict = "reached the target" if self.reached else "stopped at the step budget"
        return (f"{verdict}: mean return {mean} over the last {RETURN_WINDOW} episodes, "
                f"{self.env_steps:,} env steps, {self.updates:,} updates, "
                f"{self.seconds_from_first_step:.1f}s from the first env step "
                f"({self.seconds_total:.1f}s in all); run directory {self.run_dir}")


class Progress:
    """Episodes and counters of a run; decides when it is over."""

    def __init__(self, settings: TrainSettings, events: EventLog) -> None:
        self.settings = settings
        self.events = events
        self.returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.env_steps = 0
        self.env_steps_before = 0  # a resumed run's steps so far
        self.updates = 0
        self.first_step_time: float | None = None

    def add_episodes(self, episodes: list[Episode]) -> None:
        for episode in episodes:
            self.returns.append(episode.env_return)
            self.events.write("episode", actor=episode.actor, env_return=episode.env_return,
                              length=episode.length, actor_env_steps=episode.env_steps,
                              version=episode.version)

    @property
    def mean_return(self) -> float | None:
        return statistics.fmean(self.returns) if self.returns else None

    @property
    def reached(self) -> bool:
        target = self.settings.target_return
        return (target is not None and len(self.returns) == RETURN_WINDOW
                and (self.mean_return or 0.0) >= target)

    @property
    def over(self) -> bool:
        return self.reached or self.env_steps >= self.settings.total_env_steps


def device_for_learner() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_local(settings: TrainSettings, run_dir: Path, report_every: float = 2.0) -> Summary:
    """Every component as threads of this process, talking gRPC over loopback."""
    started = time.time()
    algorithm = ALGORITHMS[settings.algo]
    config = settings.config
    probe = make_env(settings.env_id)
    spec = env_spec(probe)
    probe.close()
    token = new_token()
    table = table_from_dict(algorithm.table(config, spec))
    device = device_for_learner()
    learner = algorithm.make_learner(config, spec, device)
    resumed: dict[str, Any] = {}
    if settings.resume is not None:
        saved = load_checkpoint(settings.resume / "learner")
        learner.load_state_dict(saved["learner"])
        resumed = saved["counters"]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with EventLog(run_dir / "events.jsonl") as events, \
            ReplayServer([table], token=token, checkpoint_dir=run_dir / "replay") as replay, \
            ParameterServer(token=token) as parameters:
        events.write("start", settings=settings.resolved(), device=str(device),
                     resumed=resumed)
        progress = Progress(settings, events)
        progress.env_steps_before = int(resumed.get("env_steps", 0))
        learner_loop = LearnerLoop(
            learner, replay=ReplayClient(replay.address, token), table=table.name,
            batch_size=config.batch_size, parameters=parameters, device=device,
            checkpoint_dir=run_dir / "learner",
            counters=lambda: {"env_steps": progress.env_steps})
        learner_loop.stats.published_version = int(resumed.get("published_version", 0))
        actors = [
            Actor(algorithm, config, settings.env_id, num_envs=settings.envs_per_actor,
                  actor_index=index, num_actors=settings.actors, seed=settings.seed,
                  replay=ReplayClient(replay.address, token), table=table.name,
                  weights=WeightFollower(parameters.address, token))
            for index in range(settings.actors)]
        errors: list[BaseException] = []

        def guarded(target: Any) -> Any:
            def run() -> None:
                try:
                    target(stop)
                except BaseException as error:
                    if not stop.is_set():
                        errors.append(error)
                        stop.set()
            return run

        threads = [threading.Thread(target=guarded(learner_loop.run), name="learner")]
        threads += [threading.Thread(target=guarded(actor.run), name=f"actor-{i}")
                    for i, actor in enumerate(actors)]
        for thread in threads:
            thread.start()
        last_report = time.monotonic()
        last_steps, last_updates = 0, 0
        while not stop.is_set():
            time.sleep(0.1)
            for actor in actors:
                progress.add_episodes(actor.stats.drain())
            progress.env_steps = progress.env_steps_before + sum(
                actor.stats.env_steps for actor in actors)
            progress.updates = learner_loop.stats.updates
            firsts = [a.stats.first_step_time for a in actors if a.stats.first_step_time]
            progress.first_step_time = min(firsts) if firsts else None
            now = time.monotonic()
            if now - last_report >= report_every:
                elapsed = now - last_report
                steps_per_s = (progress.env_steps - last_steps) / elapsed
                updates_per_s = (progress.updates - last_updates) / elapsed
                metrics = list(learner_loop.stats.metrics)
                loss = statistics.fmean(m["loss"] for m in metrics) if metrics else None
                stored = table.stats()
                events.write("throughput", env_steps=progress.env_steps,
                             updates=progress.updates, env_steps_per_s=steps_per_s,
                             updates_per_s=updates_per_s, mean_return=progress.mean_return,
                             loss=loss, replay_inserted=stored.inserted_items,
                             replay_sampled=stored.sampled_items, replay_size=stored.size,
                             insert_blocked_seconds=stored.insert_blocked_seconds,
                             sample_blocked_seconds=stored.sample_blocked_seconds,
                             learner_wait_seconds=learner_loop.prefetcher.wait_seconds
                             if learner_loop.prefetcher else 0.0)
                mean = "-" if progress.mean_return is None else f"{progress.mean_return:7.1f}"
                print(f"env steps {progress.env_steps:>9,} ({steps_per_s:7,.0f}/s)  "
                      f"updates {progress.updates:>8,} ({updates_per_s:6,.0f}/s)  "
                      f"mean return {mean}", file=sys.stderr, flush=True)
                last_report, last_steps, last_updates = now, progress.env_steps, progress.updates
            if progress.over:
                break
        stop.set()
        replay.stop(grace=0.5)     # releases actors blocked on a full rate limiter
        for thread in threads:
            thread.join(timeout=30)
        if errors:
            raise errors[0]
        learner_loop.checkpoint()
        ended = time.time()
        summary = Summary(
            reached=progress.reached, mean_return=progress.mean_return,
            env_steps=progress.env_steps, updates=progress.updates,
            seconds_from_first_step=ended - (progress.first_step_time or ended),
            seconds_total=ended - started, run_dir=str(run_dir))
        events.write("summary", **dataclasses.asdict(summary))
    return summary


def write_config(run_dir: Path, settings: TrainSettings) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(settings.resolved(), indent=1))
