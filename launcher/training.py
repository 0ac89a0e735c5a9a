"""What a training run is, whatever runs it: its settings, the wiring of the picture in
DESIGN.md, watching progress, and the summary it ends with.

The wiring, read top to bottom, is the picture: a replay service with the algorithm's
table; a learner that samples from it and publishes weights on its ParameterService; N
actors that write to the replay service and follow those weights. ``run(local=True)`` runs them
as threads of this process (still gRPC over loopback); otherwise each is a Ray actor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import statistics
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.actors.actor import Episode
from shoal.actors.envs import probe_spec
from shoal.algorithms.registry import ALGORITHMS
from shoal.launcher import top
from shoal.launcher.autoscale import Autoscaler, AutoscaleRange
from shoal.launcher.components import (
    NODE_ADDRESS,
    ActorComponent,
    LearnerComponent,
    ReplayComponent,
    bind_host,
)
from shoal.launcher.control import (
    ControlServer,
    ScaleRequests,
    remove_control_file,
    write_control_file,
)
from shoal.launcher.fleet import ActorFleet
from shoal.launcher.metrics import LauncherCollector
from shoal.launcher.rates import Rates, Samples, scrape
from shoal.launcher.ray_cluster import ClusterRefused, Demand, check_fits
from shoal.launcher.run_dir import EventLog
from shoal.protos.exposition import MetricsServer
from shoal.protos.transport import Tls, new_token, write_atomically

RETURN_WINDOW = 20  # by default the target is the mean of the last 20 training episodes


@dataclass
class TrainSettings:
    algo: str
    env_id: str
    actors: int = 2
    max_actors: int = 16           # what `shoal scale` may ask for
    autoscale: AutoscaleRange | None = None  # the autoscaler's bounds, when it steers
    replay_checkpoint_seconds: float = 30.0  # a restarted replay service resumes from it
    learner_checkpoint_updates: int = 2_000  # a restarted learner resumes from it
    tls: Tls | None = None         # the run's certificate and key, when its channels use TLS
    envs_per_actor: int = 8
    seed: int = 0
    total_env_steps: int = 200_000
    target_return: float | None = None
    return_window: int = RETURN_WINDOW  # training episodes the target's mean is over
    run_dir: Path = Path("runs")
    resume: Path | None = None
    config: Any = None             # the algorithm's config dataclass, overrides applied

    def resolved(self) -> dict[str, Any]:
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name not in ("config", "tls")}
        settings["tls"] = self.tls is not None  # never the key in config.json
        settings = {k: str(v) if isinstance(v, Path | AutoscaleRange) else v
                    for k, v in settings.items()}
        return {**settings, "algorithm_config": dataclasses.asdict(self.config)}


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

    def line(self, interrupted: bool = False, window: int = RETURN_WINDOW) -> str:
        mean = "n/a" if self.mean_return is None else f"{self.mean_return:.1f}"
        verdict = ("reached the target" if self.reached else
                   "interrupted" if interrupted else "stopped at the step budget")
        return (f"{verdict}: mean return {mean} over the last {window} episodes, "
                f"{self.env_steps:,} env steps, {self.updates:,} updates, "
                f"{self.seconds_from_first_step:.1f}s from the first env step "
                f"({self.seconds_total:.1f}s in all); run directory {self.run_dir}")


class Progress:
    """Episodes and counters of a run; decides when it is over."""

    def __init__(self, settings: TrainSettings, events: EventLog) -> None:
        self.settings = settings
        self.events = events
        self.returns: deque[float] = deque(maxlen=settings.return_window)
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
        return (target is not None and len(self.returns) == self.settings.return_window
                and (self.mean_return or 0.0) >= target)

    @property
    def over(self) -> bool:
        return self.reached or self.env_steps >= self.settings.total_env_steps


class Watch:
    """Polls the components of a run, logs what they report, prints progress, applies
    scale requests, and says when the run is over. Works on local objects and on Ray actor
    handles alike, through ``call(handle, method, *args)`` (a plain call, or
    ``ray.get(handle.method.remote())``)."""

    def __init__(self, settings: TrainSettings, events: EventLog, call: Any,
                 replay: Any, learner: Any, fleet: ActorFleet, env_steps_before: int,
                 metrics: dict[str, str] | None = None,
                 scale_requests: ScaleRequests | None = None,
                 autoscaler: Autoscaler | None = None) -> None:
        self.progress = Progress(settings, events)
        self._metrics = metrics or {}  # shoal instance -> /metrics address, for the view
        self.progress.env_steps_before = env_steps_before
        self._events = events
        self._call = call
        self._replay, self._learner, self._fleet = replay, learner, fleet
        self._scale_requests = scale_requests
        self._autoscaler = autoscaler
        self._lives: dict[str, float] = {}  # component -> when its current life started

    def poll(self) -> dict[str, Any]:
        progress = self.progress
        actors = self._fleet.poll()
        progress.add_episodes(actors.episodes)
        progress.env_steps = progress.env_steps_before + actors.env_steps
        progress.first_step_time = actors.first_step_time
        learner = self._call(self._learner, "poll", progress.env_steps)
        if learner["error"]:
            raise RuntimeError(f"learner failed: {learner['error']}")
        if self._lives.setdefault("learner", learner["started"]) != learner["started"]:
            self._lives["learner"] = learner["started"]
            self._events.write("learner_restarted", pid=learner["pid"],
                               updates_before=progress.updates,
                               resumed_updates=learner["updates"],
                               resumed_counters=learner["resumed"])
        progress.updates = learner["updates"]
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
                    self._scale_requests.apply_pending(self._fleet.scale_to)
                learner = self.poll()
                now = time.monotonic()
                if now - last_report >= report_every:
                    elapsed = now - last_report
                    steps_per_s = (progress.env_steps - last_steps) / elapsed
                    updates_per_s = (progress.updates - last_updates) / elapsed
                    rates, scraped = self._rates(scraped, elapsed)
                    self._log_throughput(learner, steps_per_s, updates_per_s, rates)
                    self._autoscale(now, scraped)
                    mean = "-" if progress.mean_return is None else f"{progress.mean_return:.1f}"
                    headline = (f"env steps {progress.env_steps:,} ({steps_per_s:,.0f}/s)  "
                                f"updates {progress.updates:,} ({updates_per_s:,.0f}/s)  "
                                f"mean return {mean}")
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

    def _autoscale(self, now: float, scraped: Samples) -> None:
        if self._autoscaler is None or self._fleet.pending:
            return  # an actor Ray has not started yet would add to nothing it measures
        decision = self._autoscaler.observe(now, scraped, len(self._fleet))
        if decision is None:
            return
        self._events.write("autoscale", previous=decision.previous, actors=decision.actors,
                           reason=decision.reason, **decision.figures)
        print(f"autoscale: actors {decision.previous} -> {decision.actors}: {decision.reason}",
              file=sys.stderr, flush=True)
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
        if self._lives.setdefault("replay", replay["started"]) != replay["started"]:
            self._lives["replay"] = replay["started"]
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


def run_table(settings: TrainSettings) -> dict[str, Any]:
    """The replay table's config for the run: the algorithm's table, sampling seeded with
    the run's seed (a restarted replay service starts from the same seed)."""
    table = ALGORITHMS[settings.algo].table(settings.config, probe_spec(settings.env_id),
                                            settings.envs_per_actor)
    return {**table, "seed": settings.seed}


def run(settings: TrainSettings, run_dir: Path, *, local: bool = False,
        address: str | None = None, started: float | None = None,
        launch: LocalLaunch | RayLaunch | None = None) -> tuple[Summary, bool]:
    """Wires and runs the picture of DESIGN.md: a replay service holding the algorithm's
    table; a learner sampling from it and publishing weights on its ParameterService;
    N actors writing to the replay service and following those weights.

    Returns the summary, and whether Ctrl-C (KeyboardInterrupt) ended the run early; the
    run then still stops its components in order and writes its checkpoint and summary.
    A component that fails ends the run with a ``failed`` event (its traceback in it) and
    the error raised. ``started`` is when the command started (its imports included).
    ``launch``: one made already (``shoal train`` joins Ray before it creates the run
    directory); without it, ``local`` and ``address`` say which to make."""
    started = started or time.time()
    interrupted = False
    table = run_table(settings)
    config = dataclasses.asdict(settings.config)
    token = new_token()
    if launch is None:
        launch = LocalLaunch() if local else RayLaunch(address, settings.max_actors,
                                                           settings.actors)
    local = isinstance(launch, LocalLaunch)
    host = launch.host
    with EventLog(run_dir / "events.jsonl") as events:
        run = run_dir.name
        replay = launch.start(ReplayComponent, table, token, host, str(run_dir / "replay"),
                              run=run, restart=True, tls=settings.tls,
                              checkpoint_every_seconds=settings.replay_checkpoint_seconds)
        replay_address = launch.call(replay, "address")
        learner = launch.start(LearnerComponent, settings.algo, settings.env_id, config, token,
                               host, replay_address, table["name"], str(run_dir),
                               str(settings.resume) if settings.resume else None, gpu=True,
                               restart=True, run=run, num_actors=settings.actors,
                               checkpoint_every=settings.learner_checkpoint_updates,
                               tls=settings.tls, seed=settings.seed)
        parameters_address = launch.call(learner, "address")
        metrics = {"replay": launch.call(replay, "metrics_address"),
                   "learner": launch.call(learner, "metrics_address")}

        def start_actor(index: int, num_actors: int) -> Any:
            return launch.start(ActorComponent, settings.algo, settings.env_id, config, index,
                                num_actors, settings.envs_per_actor, settings.seed, token,
                                replay_address, table["name"], parameters_address,
                                restart=True, spread=True, run=run, host=host,
                                tls=settings.tls)

        fleet = ActorFleet(launch, start_actor, events, metrics,
                           on_metrics_change=lambda: write_prometheus_targets(run_dir, run,
                                                                              metrics),
                           max_actors=settings.max_actors,
                           refuse_scaling=fixed_actor_count(settings.algo))
        fleet.start(settings.actors)
        resumed = launch.call(learner, "resumed_counters")
        events.write("start", settings=settings.resolved(), resumed=resumed,
                     launch="local" if local else "ray", host=host)
        if not local:  # which Ray node (and process) each component landed on
            placed = {name: launch.call(handle, "placement") for name, handle in
                      [("replay", replay), ("learner", learner),
                       *((f"actor-{i}", h) for i, h in sorted(fleet.handles.items()))]}
            events.write("placement", nodes={name: p["node"] for name, p in placed.items()},
                         pids={name: p["pid"] for name, p in placed.items()})
        scale_requests = ScaleRequests()
        autoscaler = None if settings.autoscale is None else Autoscaler(settings.autoscale)
        watch = Watch(settings, events, launch.call, replay, learner, fleet,
                      env_steps_before=int(resumed.get("env_steps", 0)), metrics=metrics,
                      scale_requests=scale_requests, autoscaler=autoscaler)
        launcher_metrics = MetricsServer(LauncherCollector(
            lambda: len(fleet), lambda: autoscaler.decisions if autoscaler else {}, run),
            bind_host(host))
        metrics["launcher"] = launcher_metrics.address
        write_prometheus_targets(run_dir, run, metrics)
        try:
            with ControlServer(token, scale_requests, watch.status) as control, \
                    contextlib.closing(launcher_metrics):
                write_control_file(run_dir, control.address, token)
                progress = watch.run()
        except KeyboardInterrupt:
            progress, interrupted = watch.progress, True
        except Exception as error:
            write_failure(events, error, launch.call, {
                "learner": learner, **{f"actor-{i}": h for i, h in fleet.running().items()}})
            raise
        finally:
            remove_control_file(run_dir)
            remove_from_targets_index(run_dir)
            launch.stop_all(replay, learner, fleet)
        ended = time.time()
        summary = Summary(
            reached=progress.reached, mean_return=progress.mean_return,
            env_steps=progress.env_steps, updates=progress.updates,
            seconds_from_first_step=ended - (progress.first_step_time or ended),
            seconds_total=ended - started, run_dir=str(run_dir))
        events.write("summary", **dataclasses.asdict(summary), interrupted=interrupted)
    return summary, interrupted


def write_failure(events: EventLog, error: BaseException, call: Any,
                  components: dict[str, Any]) -> None:
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


class LocalLaunch:
    """Components as objects of this process (their work runs in threads)."""

    host = "127.0.0.1"

    def start(self, component: type, *args: Any, gpu: bool = False,
              restart: bool = False, spread: bool = False, **keywords: Any) -> Any:
        return component(*args, **keywords)

    @staticmethod
    def call(handle: Any, method: str, *args: Any) -> Any:
        return getattr(handle, method)(*args)

    def stop_all(self, replay: Any, learner: Any, fleet: ActorFleet) -> None:
        _stop_in_order(self.call, replay, learner, fleet)

    @staticmethod
    def call_all(handles: list[Any], method: str) -> list[Any]:
        return [getattr(handle, method)() for handle in handles]

    def kill(self, handle: Any) -> None:
        """Nothing to do: a stopped local component holds no threads or sockets."""

    @staticmethod
    def when_ready(handle: Any) -> None:
        """A local component is ready as it is made."""

    @staticmethod
    def is_ready(token: None) -> bool:
        return True


RAY_CALL_SECONDS = 600.0
"""A bound on a hung component, not a speed: on a loaded machine Ray took over 120 s to
start a learner (its first call waits for that) or to bring one back after a kill."""


class RayLaunch:
    """Components as Ray actors: a local Ray by default, a cluster given an address (or
    RAY_ADDRESS). Actors restart when they die; the learner asks for a GPU if one is free.
    Joining a cluster, the run must fit as it starts (``ray_cluster.check_fits``); an
    address Ray finds no cluster at, or a cluster too small, raises ClusterRefused.
    ``shoal train`` probes a HOST:PORT before (``ray_cluster.probe``: ray.init retries one
    that is not a cluster's for minutes, and one that refuses its token forever)."""

    def __init__(self, address: str | None, max_actors: int, actors: int = 1) -> None:
        import os

        import ray

        self.ray = ray
        joining = address or os.environ.get("RAY_ADDRESS")
        # ray.init installs a SIGTERM handler that aborts the driver; keep the process's
        # own (shoal train's stops the run in order and writes its summary).
        on_sigterm = signal.getsignal(signal.SIGTERM)
        if joining:
            try:
                # WARNING: Ray's two INFO lines would come before a refusal's one line
                ray.init(address=joining, log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError as error:  # e.g. "auto" with no cluster on this machine
                raise ClusterRefused(" ".join(str(error).split())) from None
        else:  # a Ray of our own ("local": never one that runs on this machine already);
            # one logical CPU per component: they share this machine's cores anyway
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, max_actors + 2),
                     include_dashboard=False, log_to_driver=False)
        if on_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
        nodes = [node for node in ray.nodes() if node["Alive"]]
        # One node: loopback. Several: each component binds its node's address.
        self.host = NODE_ADDRESS if len(nodes) > 1 else "127.0.0.1"
        free = ray.available_resources()
        self._gpus = free.get("GPU", 0)
        if joining:
            try:
                check_fits(Demand(actors, learner_gpu=self._gpus >= 1),
                           ray.cluster_resources(), free, len(nodes), joining)
            except ClusterRefused:
                ray.shutdown()
                raise

    def start(self, component: type, *args: Any, gpu: bool = False,
              restart: bool = False, spread: bool = False, **keywords: Any) -> Any:
        # No task events: the launcher polls every component ~15 times a second, and Ray's
        # GCS kept a record of each call (+1.9 MB/min in a 30-minute soak).
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": -1 if restart else 0,
                                   "enable_task_events": False}
        if restart:  # a call to a dead actor waits for its next life instead of failing
            options.update(max_task_retries=-1)
        if spread:
            options.update(scheduling_strategy="SPREAD")
        if gpu and self._gpus:
            options["num_gpus"] = 1
        return self.ray.remote(component).options(**options).remote(*args, **keywords)

    def call(self, handle: Any, method: str, *args: Any) -> Any:
        return self.ray.get(getattr(handle, method).remote(*args), timeout=RAY_CALL_SECONDS)

    def call_all(self, handles: list[Any], method: str) -> list[Any]:
        """One call to each, all under way at once."""
        return self.ray.get([getattr(handle, method).remote() for handle in handles],
                            timeout=RAY_CALL_SECONDS)

    def kill(self, handle: Any) -> None:
        self.ray.kill(handle, no_restart=True)

    def when_ready(self, handle: Any) -> Any:
        """What ``is_ready`` asks about: the actor's start, which waits while the cluster
        has no free resources for it."""
        return handle.__ray_ready__.remote()

    def is_ready(self, token: Any) -> bool:
        done, _ = self.ray.wait([token], timeout=0)
        return bool(done)

    def stop_all(self, replay: Any, learner: Any, fleet: ActorFleet) -> None:
        try:
            _stop_in_order(self.call, replay, learner, fleet)
        finally:
            self.ray.shutdown()


def _stop_in_order(call: Any, replay: Any, learner: Any, fleet: ActorFleet) -> None:
    """Learner first (its final checkpoint), then the replay service, which releases any
    actor blocked on a full rate limiter, then the actors."""
    fleet.stop_collecting()
    call(learner, "stop")
    call(replay, "stop")
    fleet.stop()


def fixed_actor_count(algo: str) -> str | None:
    """Why ``algo`` cannot change its actor count mid-run, or None when it can."""
    if ALGORITHMS[algo].experience != "rollouts":
        return None
    scalable = sorted(name for name, a in ALGORITHMS.items() if a.experience != "rollouts")
    return (f"actors: {algo} trains on one rollout from each actor per update, so its actor "
            f"count is fixed for the run; live scaling is for {', '.join(scalable)}")


def write_config(run_dir: Path, settings: TrainSettings) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(settings.resolved(), indent=1))


PROMETHEUS_TARGETS = "prometheus_targets.json"
TARGETS_INDEX = "prometheus_targets"
"""Beside the run directories, one file per running run: Prometheus's file_sd globs only
a path's last element, so ``runs/*/prometheus_targets.json`` cannot be watched, while
``runs/prometheus_targets/*.json`` can."""


def write_prometheus_targets(run_dir: Path, run: str, addresses: dict[str, str]) -> None:
    """Every process's /metrics in Prometheus's file_sd format, in the run directory (the
    record) and in the index beside it (what deploy/prometheus/prometheus.yml watches);
    rewritten when Ray restarts an actor, whose new life has a new port."""
    groups = [{"targets": [address], "labels": {"run": run, "component": name.split("-")[0],
                                                "shoal_instance": name}}
              for name, address in addresses.items()]
    index = run_dir.parent / TARGETS_INDEX
    index.mkdir(exist_ok=True)
    for path in (run_dir / PROMETHEUS_TARGETS, index / f"{run}.json"):
        write_atomically(path, json.dumps(groups, indent=1))


def remove_from_targets_index(run_dir: Path) -> None:
    """A finished run leaves the index (its processes are gone), not its own record."""
    (run_dir.parent / TARGETS_INDEX / f"{run_dir.name}.json").unlink(missing_ok=True)
