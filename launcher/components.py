"""The three kinds of component of a run, each owning its threads and sockets, with the
same small surface (``poll``, ``stop``) whether it runs in this process (``--local``) or
as a Ray actor (``ray.remote(ReplayComponent)`` etc.). Each is given its typed part of the
run configuration (``launcher/config.py``) and the ``Wiring`` that says how to reach the
rest of the run. Polls return plain dicts, so they cross process boundaries as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import statistics
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoal.actors.actor import Actor
from shoal.actors.evaluation import GreedyEvaluator
from shoal.actors.metrics import ActorCollector
from shoal.actors.weights import WeightFollower
from shoal.algorithms.normalization import RunningStats
from shoal.launcher.config import TrainConfig
from shoal.learner.checkpoint import load_checkpoint
from shoal.learner.evaluation import Evaluation
from shoal.learner.learner import LearnerLoop
from shoal.learner.metrics import LearnerCollector
from shoal.learner.parameter_service import ParameterServer
from shoal.protos.exposition import MetricsServer
from shoal.protos.tables import TableSpec
from shoal.protos.transport import Tls, write_atomically
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.config import ReplayConfig
from shoal.replay_service.metrics import ReplayCollector
from shoal.replay_service.server import ReplayServer
from shoal.replay_service.table import Table

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Wiring:
    """How a component reaches the rest of its run, which is not what the run is."""

    token: str            # the run's bearer token, on every call
    host: str = "127.0.0.1"  # the address to bind (NODE_ADDRESS: the node's own)
    tls: Tls | None = None   # the run's certificate, when its channels use TLS
    run: str = ""         # the run's name: a label of every metric


EVAL_SEED_OFFSET = 10_000
"""The greedy evaluations' envs are seeded with the run's seed + this, the same for every
evaluation (each plays the same start states), apart from every actor's (seed + 1000 i)."""

NODE_ADDRESS = "node"
"""The host a launcher passes when its run spans Ray nodes: each component binds the
address of the node it landed on, which the launcher cannot know before placement."""


def bind_host(host: str) -> str:
    if host != NODE_ADDRESS:
        return host
    import ray

    return str(ray.util.get_node_ip_address())


class _Placed:
    """Where a component runs, for the launcher's placement event."""

    @staticmethod
    def placement() -> dict[str, Any]:
        import ray

        node = str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
        return {"node": node, "pid": os.getpid()}


class LifePorts:
    """The ports a component's earlier life in this launch bound, kept beside its
    checkpoints: Ray restarts a crashed component with the same arguments, and the new life
    binds the same ports so that actors, the learner and Prometheus reconnect to it as
    they are. A file from another launch (another run token) is not this one's."""

    FILE = "ports.json"

    def __init__(self, directory: Path | None, token: str) -> None:
        self._path = directory / self.FILE if directory else None
        self._launch = hashlib.sha256(token.encode()).hexdigest()[:16]
        saved: dict[str, Any] = {}
        if self._path is not None and self._path.exists():
            saved = json.loads(self._path.read_text())
        self.previous: dict[str, int] = (saved.get("ports", {})
                                         if saved.get("launch") == self._launch else {})

    @property
    def restarted(self) -> bool:
        """An earlier life of this component ran in this launch."""
        return bool(self.previous)

    def save(self, **ports: int) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self._path, json.dumps({"launch": self._launch, "ports": ports}))


def seed_learner(seed: int) -> None:
    """Seeds the generators a learner draws from without one of its own: torch's (network
    initialisation, CUDA's too), numpy's and Python's global ones. The run's one seed: the
    replay table and the actors take the same (actor i: seed + 1000 i)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def greedy_evaluation(config: TrainConfig, checkpoints: Path,
                      env_steps: int) -> Evaluation | None:
    """Greedy play of the published policy every ``eval_every_env_steps`` (None: never), in
    the learner's process, off its loop's thread; best.pt beside the checkpoints.
    ``env_steps``: the run's so far (a resumed run's)."""
    every = config.learner.eval_every_env_steps
    if every == 0:
        return None
    evaluator = GreedyEvaluator(config.definition, config.algorithm, config.env,
                                config.env_spec, config.learner.eval_episodes,
                                seed=config.seed + EVAL_SEED_OFFSET,
                                normalize_observations=config.collection.normalize_observations)
    return Evaluation(evaluator, every, checkpoints, env_steps=env_steps,
                      run_config=config.to_dict())


class _Background:
    """Runs ``target(stop)`` in a thread and keeps its error for ``poll``: the one-line
    ``error`` the launcher raises with, and the ``traceback`` that says where, which is
    also logged here (in a Ray actor, the launcher sees only what ``failure`` returns)."""

    def __init__(self, name: str, target: Any) -> None:
        self.stop_event = threading.Event()
        self.error: str | None = None
        self.traceback: str | None = None
        self._name = name
        self._target = target
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._target(self.stop_event)
        except BaseException as error:
            if not self.stop_event.is_set():
                self.traceback = traceback.format_exc()
                self.error = f"{type(error).__name__}: {error}"
                log.exception("%s failed", self._name)

    def failure(self) -> dict[str, str] | None:
        """The error and traceback of a thread that died, for the run's ``failed`` event."""
        if self.error is None:
            return None
        return {"error": self.error, "traceback": self.traceback or ""}

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)


FLUSH_SECONDS = 300.0
"""How long a stopped actor waits for its writer to flush (the replay service's
acknowledgement of every item it sent) before it gives up and closes its channel, losing
what is unacknowledged. A bound on a stuck flush, not a speed: 30 s lost 1,936 of a
removed actor's 5,776 items beside two busy loops, where Ray's niced workers get a few
percent of a core. It stays under the launcher's bound on the call (RAY_CALL_SECONDS)."""


class ReplayComponent(_Placed):
    """The replay service. With a checkpoint directory it checkpoints every
    ``checkpoint_every_seconds`` and at stop, and a life Ray starts after a crash restores
    the newest checkpoint and serves on the ports of the life before, so clients find it
    where they left it."""

    def __init__(self, spec: TableSpec, config: ReplayConfig, wiring: Wiring,
                 checkpoint_dir: str | None, *, metrics_port: int = 0) -> None:
        self.started = time.time()
        host = bind_host(wiring.host)
        self.table = Table.from_spec(spec)
        directory = Path(checkpoint_dir) if checkpoint_dir else None
        ports = LifePorts(directory, wiring.token)
        self.server = ReplayServer([self.table], token=wiring.token, host=host,
                                   port=ports.previous.get("port", 0),
                                   checkpoint_dir=directory,
                                   checkpoint_every_seconds=config.checkpoint_every_seconds,
                                   tls=wiring.tls)
        self.server.start()
        self.metrics = MetricsServer(ReplayCollector(lambda: [self.table.stats()], wiring.run,
                                                     "replay"), host,
                                     ports.previous.get("metrics_port", metrics_port))
        ports.save(port=self.server.port, metrics_port=self.metrics.port)

    def address(self) -> str:
        return self.server.address

    def metrics_address(self) -> str:
        return self.metrics.address

    def poll(self) -> dict[str, Any]:
        restored = self.server.restored_from
        return {**dataclasses.asdict(self.table.stats()), "started": self.started,
                "pid": os.getpid(), "restored_from": str(restored) if restored else None}

    def stop(self) -> None:
        self.server.stop(grace=0.5, checkpoint=True)
        self.metrics.close()


class LearnerComponent(_Placed):
    """The learner, its ParameterService, its loop thread and its greedy evaluations."""

    def __init__(self, config: TrainConfig, wiring: Wiring, replay_address: str, run_dir: str,
                 resume: str | None, *, port: int = 0, metrics_port: int = 0) -> None:
        algorithm = config.definition
        self.algo = config.algo
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        seed_learner(config.seed)  # before the networks: their initial weights follow it
        learner = algorithm.make_learner(config.algorithm, config.env_spec, self.device)
        self.started = time.time()
        host = bind_host(wiring.host)
        checkpoints = Path(run_dir) / "learner"
        ports = LifePorts(checkpoints, wiring.token)
        checkpoint_every = config.learner.checkpoint_every
        # A life Ray starts after a crash goes on from this run's newest checkpoint.
        if ports.restarted and (checkpoints / "learner.pt").exists():
            resume = run_dir
        self.resumed: dict[str, Any] = {}
        if resume is not None:
            saved = load_checkpoint(Path(resume) / "learner")
            learner.load_state_dict(saved["learner"])
            self.resumed = saved["counters"]
        self.env_steps = int(self.resumed.get("env_steps", 0))  # told by the launcher
        self.evaluation = greedy_evaluation(config, checkpoints, self.env_steps)
        normalize = config.collection.normalize_observations
        self.parameters = ParameterServer(
            token=wiring.token, host=host, tls=wiring.tls, port=ports.previous.get("port", port),
            observation_shape=config.env_spec.observation_shape if normalize else None).start()
        if normalize and "observation_stats" in self.resumed:  # the run's, not from zero
            self.parameters.restore_observation_stats(
                RunningStats.from_lists(self.resumed["observation_stats"]))
        self.loop = LearnerLoop(
            learner, replay=ReplayClient(replay_address, wiring.token, tls=wiring.tls),
            table=config.table.name,
            batch_size=algorithm.batch_size(config.algorithm, config.run.actors),
            parameters=self.parameters, device=self.device,
            publish_every=algorithm.publish_every,
            max_policy_lag=config.collection.max_policy_lag,  # asynchronous when set
            checkpoint_dir=checkpoints, checkpoint_every=checkpoint_every,
            counters=lambda: {"env_steps": self.env_steps}, evaluation=self.evaluation,
            run_config=config.to_dict())
        version = int(self.resumed.get("published_version", 0))
        if ports.restarted:
            # Actors hold weights the last life published after its checkpoint, and follow
            # only newer versions: skip past every version it can have published since.
            version += checkpoint_every + 1
        self.loop.stats.published_version = version
        self.background = _Background("learner", self.loop.run)
        self.metrics = MetricsServer(LearnerCollector(self.loop, str(self.device), wiring.run,
                                                      "learner"), host,
                                     ports.previous.get("metrics_port", metrics_port))
        ports.save(port=self.parameters.port, metrics_port=self.metrics.port)

    def address(self) -> str:
        return self.parameters.address

    def metrics_address(self) -> str:
        return self.metrics.address

    def resumed_counters(self) -> dict[str, Any]:
        return self.resumed

    def failure(self) -> dict[str, str] | None:
        return self.background.failure()

    def poll(self, env_steps: int) -> dict[str, Any]:
        self.env_steps = env_steps
        stats = self.loop.stats
        losses = [m["loss"] for m in list(stats.metrics)]  # a copy: the loop appends
        prefetcher = self.loop.prefetcher
        return {"updates": stats.updates, "published_version": stats.published_version,
                "loss": statistics.fmean(losses) if losses else None,
                "wait_seconds": prefetcher.wait_seconds if prefetcher else 0.0,
                "update_seconds": stats.update_seconds, "device": str(self.device),
                "samples": stats.samples, "stale_dropped": stats.stale_dropped,
                "started": self.started, "pid": os.getpid(), "resumed": self.resumed,
                **self._evaluations(), "error": self.background.error}

    def _evaluations(self) -> dict[str, Any]:
        """The evaluations since the last report, and the best so far."""
        evaluation = self.evaluation
        return {"evaluations": [r.as_dict() for r in evaluation.drain()] if evaluation else [],
                "best_eval_return": evaluation.best if evaluation else None}

    def finish(self) -> dict[str, Any]:
        """Ends the loop and plays its last weights once more (``LearnerLoop.
        final_evaluation``): a run stops at its target or budget between two evaluations,
        and best.pt should weigh the policy it ended with too. What ``poll`` would report of
        the evaluations since its last call."""
        self.background.stop()
        self.loop.final_evaluation()
        return self._evaluations()

    def stop(self, checkpoint: bool = True) -> Path | None:
        """Ends the loop and the ParameterService; returns the last checkpoint's path."""
        self.background.stop()
        path = self.loop.checkpoint() if checkpoint else None
        self.parameters.stop(grace=0.5)
        self.metrics.close()
        return path


class ActorComponent(_Placed):
    """One actor process's work: a vector env, the policy, writing, following weights."""

    def __init__(self, config: TrainConfig, wiring: Wiring, index: int, num_actors: int,
                 replay_address: str, parameters_address: str, *,
                 max_env_steps: int | None = None, metrics_port: int = 0) -> None:
        self.started = time.time()
        self.weights = WeightFollower(parameters_address, wiring.token, tls=wiring.tls)
        self.replay = ReplayClient(replay_address, wiring.token, tls=wiring.tls)
        self.actor = Actor(config.definition, config.algorithm, config.env, config.env_spec,
                           config.collection, actor_index=index, num_actors=num_actors,
                           seed=config.seed, replay=self.replay, table=config.table.name,
                           weights=self.weights)
        self.background = _Background(
            f"actor-{index}", lambda stop: self.actor.run(stop, max_env_steps))
        self.metrics = MetricsServer(ActorCollector(self.actor.stats, wiring.run,
                                                    f"actor-{index}"),
                                     bind_host(wiring.host), metrics_port)

    def metrics_address(self) -> str:
        return self.metrics.address

    def poll(self) -> dict[str, Any]:
        stats = self.actor.stats
        return {"env_steps": stats.env_steps, "first_step_time": stats.first_step_time,
                "version": stats.version, "items_sent": stats.items_sent,
                "items_stored": stats.items_stored, "items_lost": stats.items_lost,
                "episodes": [dataclasses.asdict(e) for e in stats.drain()],
                "started": self.started, "pid": os.getpid(),
                "error": self.background.error}

    def failure(self) -> dict[str, str] | None:
        return self.background.failure()

    def done(self) -> bool:
        """Its loop ended: the step budget was taken, it was stopped, or it failed."""
        return not self.background.thread.is_alive()

    def request_stop(self) -> None:
        """Asks the loop to end without waiting: it may be blocked on a full rate limiter
        until the replay service goes away."""
        self.background.stop_event.set()

    def stop(self) -> None:
        self.background.stop(timeout=FLUSH_SECONDS)
        self.weights.close()
        self.replay.close()
        self.metrics.close()
