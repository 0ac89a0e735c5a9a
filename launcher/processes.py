"""``shoal learner`` and ``shoal actor``: one component of a run as a plain process.

The same components ``shoal train`` starts as Ray actors, for runs wired by hand or by
another scheduler. Each shell starts its component, writes its address where asked, logs a
line every few seconds, and turns SIGTERM/SIGINT into a clean stop (the learner saves a
last checkpoint). A run wired by hand:

    shoal tables --algo dqn --env CartPole-v1 > tables.yaml
    shoal replay-server --config tables.yaml --token-file run/token --address-file run/replay
    shoal learner --algo dqn --env CartPole-v1 --replay $(cat run/replay) \\
        --token-file run/token --run-dir run --address-file run/parameters --num-actors 1
    shoal actor --algo dqn --env CartPole-v1 --replay $(cat run/replay) \\
        --parameters $(cat run/parameters) --token-file run/token --index 0 --num-actors 1
"""

from __future__ import annotations

import logging
import signal
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.launcher.components import ActorComponent, LearnerComponent
from shoal.protos.transport import write_atomically

log = logging.getLogger("shoal")


def stop_on_signals() -> threading.Event:
    """An event SIGTERM or SIGINT sets: the process then stops as it would at its end."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _report_until(stop: threading.Event, finished: Callable[[], bool],
                  report: Callable[[float], None], every: float) -> None:
    """Calls ``report(seconds since the last report)`` every ``every`` seconds until
    ``stop`` is set or ``finished()`` is true."""
    last = time.monotonic()
    while not stop.wait(min(every, 0.25)) and not finished():
        now = time.monotonic()
        if now - last >= every:
            report(now - last)
            last = now


def run_learner(component: LearnerComponent, *, address_file: Path | None,
                report_every: float = 5.0) -> int:
    """Serves weights and trains until a signal; exit 0, or 1 if the learner failed."""
    stop = stop_on_signals()
    if address_file is not None:
        write_atomically(address_file, component.address())
    log.info("%s learner on %s, ParameterService at %s, metrics at http://%s/metrics",
             component.algo, component.device, component.address(),
             component.metrics_address())
    before = component.poll(component.env_steps)

    def report(elapsed: float) -> None:
        nonlocal before
        now = component.poll(component.env_steps)
        busy = (now["update_seconds"] - before["update_seconds"]) / elapsed
        loss = "-" if now["loss"] is None else f"{now['loss']:.4f}"
        log.info("updates %d (%.0f/s), busy %.0f%%, weights version %d, loss %s",
                 now["updates"], (now["updates"] - before["updates"]) / elapsed,
                 100 * busy, now["published_version"], loss)
        before = now

    _report_until(stop, lambda: component.background.error is not None, report, report_every)
    error = component.background.error
    checkpoint = component.stop(checkpoint=True)
    if error is not None:
        log.error("learner failed: %s", error)
        return 1
    log.info("stopped after %d updates; checkpoint %s", component.loop.stats.updates,
             checkpoint)
    return 0


def run_actor(component: ActorComponent, *, report_every: float = 5.0) -> int:
    """Collects until its step budget or a signal; exit 0, or 1 if the actor failed."""
    stop = stop_on_signals()
    returns: deque[float] = deque(maxlen=20)
    log.info("actor collecting, metrics at http://%s/metrics", component.metrics_address())
    before = component.poll()

    def report(elapsed: float) -> None:
        nonlocal before
        now = component.poll()
        returns.extend(episode["env_return"] for episode in now["episodes"])
        mean = f"{statistics.fmean(returns):.1f}" if returns else "-"
        log.info("env steps %d (%.0f/s), weights version %d, mean return %s",
                 now["env_steps"], (now["env_steps"] - before["env_steps"]) / elapsed,
                 now["version"], mean)
        before = now

    _report_until(stop, component.done, report, report_every)
    component.request_stop()
    component.stop()  # waits for the loop's last step: its items count in the final line
    final: dict[str, Any] = component.poll()
    if final["error"] is not None:
        log.error("actor failed: %s", final["error"])
        return 1
    log.info("stopped after %d env steps, %d items sent, %d stored, weights version %d",
             final["env_steps"], final["items_sent"], final["items_stored"], final["version"])
    return 0
