"""How a run's components start and are called: as objects of this process (``--local``,
their work in threads, still gRPC over loopback) or as Ray actors, on a local Ray or a
cluster. The wiring (``training.run``), the fleet and the monitor work on either through the
same few methods: ``start``, ``call``, ``call_all``, ``kill``, ``when_ready``/``is_ready``,
``stop_all``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

from shoal.launcher.components import NODE_ADDRESS
from shoal.launcher.fleet import ActorFleet
from shoal.launcher.ray_cluster import ClusterRefused, Demand, check_fits

Handle = object
"""A started component: the object itself (``LocalLaunch``) or a Ray actor handle to it.
Only its launch calls it (``call(handle, "poll")``), so nothing else needs its type."""


class Launch(Protocol):
    host: str
    cores: float  # the CPUs the run's processes share (the autoscaler's headroom)

    def start(self, component: type, *args: object, gpu: bool = False,
              restart: bool = False, spread: bool = False, **keywords: object) -> Handle: ...
    def call(self, handle: Handle, method: str, *args: object) -> Any: ...
    def call_all(self, handles: list[Handle], method: str) -> list[Any]: ...
    def kill(self, handle: Handle) -> None: ...
    def when_ready(self, handle: Handle) -> object: ...
    def is_ready(self, token: object) -> bool: ...
    def stop_all(self, replay: Handle, learner: Handle, fleet: ActorFleet, *,
                 final_evaluation: bool = False) -> dict[str, Any] | None: ...


class LocalLaunch:
    """Components as objects of this process (their work runs in threads)."""

    host = "127.0.0.1"
    cores = float(os.cpu_count() or 1)

    def start(self, component: type, *args: object, gpu: bool = False,
              restart: bool = False, spread: bool = False, **keywords: object) -> Handle:
        return component(*args, **keywords)

    @staticmethod
    def call(handle: Handle, method: str, *args: object) -> Any:
        return getattr(handle, method)(*args)

    def stop_all(self, replay: Handle, learner: Handle, fleet: ActorFleet, *,
                 final_evaluation: bool = False) -> dict[str, Any] | None:
        return stop_in_order(self.call, replay, learner, fleet, final_evaluation)

    @staticmethod
    def call_all(handles: list[Handle], method: str) -> list[Any]:
        return [getattr(handle, method)() for handle in handles]

    def kill(self, handle: Handle) -> None:
        """Nothing to do: a stopped local component holds no threads or sockets."""

    @staticmethod
    def when_ready(handle: Handle) -> None:
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
            # one logical CPU per component: they share this machine's cores anyway. Token
            # authentication stays on; ERROR while it starts keeps its three start-up lines
            # (token auth enabled, a token saved, a local instance started) off the console
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, max_actors + 2),
                     include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            logging.getLogger("ray").setLevel(logging.WARNING)  # later warnings do matter
        if on_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
        nodes = [node for node in ray.nodes() if node["Alive"]]
        # One node: loopback. Several: each component binds its node's address.
        self.host = NODE_ADDRESS if len(nodes) > 1 else "127.0.0.1"
        free = ray.available_resources()
        # a Ray of our own is told of more CPUs than there are (one per component)
        self.cores = (ray.cluster_resources().get("CPU", 1.0) if joining
                      else float(os.cpu_count() or 1))
        self._gpus = free.get("GPU", 0)
        if joining:
            try:
                check_fits(Demand(actors, learner_gpu=self._gpus >= 1),
                           ray.cluster_resources(), free, len(nodes), joining)
            except ClusterRefused:
                ray.shutdown()
                raise

    def start(self, component: type, *args: object, gpu: bool = False,
              restart: bool = False, spread: bool = False, **keywords: object) -> Handle:
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

    def call(self, handle: Handle, method: str, *args: object) -> Any:
        return self.ray.get(getattr(handle, method).remote(*args), timeout=RAY_CALL_SECONDS)

    def call_all(self, handles: list[Handle], method: str) -> list[Any]:
        """One call to each, all under way at once."""
        return self.ray.get([getattr(handle, method).remote() for handle in handles],
                            timeout=RAY_CALL_SECONDS)

    def kill(self, handle: Handle) -> None:
        self.ray.kill(handle, no_restart=True)  # type: ignore[arg-type]

    def when_ready(self, handle: Handle) -> object:
        """What ``is_ready`` asks about: the actor's start, which waits while the cluster
        has no free resources for it."""
        return handle.__ray_ready__.remote()  # type: ignore[attr-defined]

    def is_ready(self, token: object) -> bool:
        done, _ = self.ray.wait([token], timeout=0)
        return bool(done)

    def stop_all(self, replay: Handle, learner: Handle, fleet: ActorFleet, *,
                 final_evaluation: bool = False) -> dict[str, Any] | None:
        try:
            return stop_in_order(self.call, replay, learner, fleet, final_evaluation)
        finally:
            self.ray.shutdown()


def stop_in_order(call: Callable[..., Any], replay: Handle, learner: Handle,
                  fleet: ActorFleet, final_evaluation: bool = False) -> dict[str, Any] | None:
    """Learner first (with ``final_evaluation``, a greedy evaluation of its last weights,
    whose report this returns; then its final checkpoint), then the replay service, which
    releases any actor blocked on a full rate limiter, then the actors."""
    fleet.stop_collecting()
    finished = call(learner, "finish") if final_evaluation else None
    call(learner, "stop")
    call(replay, "stop")
    fleet.stop()
    return finished
