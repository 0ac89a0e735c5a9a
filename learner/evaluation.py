"""Evaluation during training: when to play the published policy greedily, and the best
state so far kept as ``best.pt``. No env code: how to play is the ``evaluate`` callable's
(the launcher gives ``actors/evaluation.py``'s ``GreedyEvaluator``).

The learner must not wait for an evaluation (a few greedy episodes of CartPole are
hundreds of forward passes, a few Atari games tens of thousands), so each one runs on a
thread of its own, one at a time. What it played is captured when it starts: the weights
of that version and a CPU copy of the learner's state, so that ``best.pt`` holds exactly
the policy the evaluation scored, however far training has gone on since.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shoal.algorithms.base import Weights
from shoal.learner.checkpoint import BEST, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    env_steps: int        # the run's env steps when the evaluation started
    updates: int
    version: int          # the published weight version it played
    mean_return: float
    returns: tuple[float, ...]
    seconds: float        # how long playing took
    final: bool = False   # the run's last weights, played as it ended

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a poll that crosses a process boundary and for the event."""
        return {**dataclasses.asdict(self), "returns": list(self.returns)}


class EvaluationFailed(RuntimeError):
    """The evaluation thread raised; the learner loop raises this to end the run."""


def cpu_copy(value: Any) -> Any:
    """A deep copy of a state dict with every tensor copied to the CPU: the learner's own
    tensors change in place with each update (and may live on a GPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):  # OrderedDict (a module's state dict) stays one
        return type(value)((key, cpu_copy(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return type(value)(cpu_copy(item) for item in value)
    return copy.deepcopy(value)  # numbers, strings, None, and whatever else it holds


def read_best(directory: Path | None) -> float | None:
    """The mean return of the ``best.pt`` in ``directory``: what a resumed run has to beat."""
    if directory is None or not (directory / BEST).exists():
        return None
    value = load_checkpoint(directory / BEST)["counters"].get("eval_return")
    return None if value is None else float(value)


@dataclass(frozen=True)
class _Start:
    env_steps: int
    updates: int
    version: int
    weights: Weights
    state: dict[str, Any]
    counters: dict[str, Any]
    final: bool


class Evaluation:
    """Greedy evaluations every ``every_env_steps`` env steps of the run, and the best one's
    learner state in ``checkpoint_dir/best.pt`` (none without a directory).

    ``env_steps``: the run's steps so far (a resumed run's), so that its first evaluation
    is at the next multiple after them; a ``best.pt`` already in the directory (a resumed
    run's) sets the return to beat. An evaluation due while one still plays starts once it
    is done, and the multiples passed meanwhile are skipped."""

    def __init__(self, evaluate: Callable[[Weights, int], list[float]], every_env_steps: int,
                 checkpoint_dir: Path | None = None, *, env_steps: int = 0,
                 run_config: Mapping[str, Any] | None = None) -> None:
        if every_env_steps < 1:
            raise ValueError(f"every_env_steps: expected a positive count, got {every_env_steps}")
        self._evaluate = evaluate
        self.every_env_steps = every_env_steps
        self._checkpoint_dir = checkpoint_dir
        self._run_config = run_config  # what best.pt carries, for shoal eval
        self._next = self._multiple_after(env_steps)
        self.best: float | None = read_best(checkpoint_dir)
        self.results: list[EvaluationResult] = []  # all of them, oldest first
        self._unpolled: list[EvaluationResult] = []
        self.error: str | None = None
        self.traceback: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._abandoned = False

    def _multiple_after(self, env_steps: int) -> int:
        return (env_steps // self.every_env_steps + 1) * self.every_env_steps

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def due(self, env_steps: int) -> bool:
        """Whether ``start`` would start one now: cheap, so the caller copies weights and
        state only when it is."""
        return env_steps >= self._next and not self.running and self.error is None

    def start(self, env_steps: int, updates: int, version: int, weights: Weights,
              state: Mapping[str, Any], counters: Mapping[str, Any],
              final: bool = False) -> None:
        """Plays ``weights`` (version ``version``) on a thread of its own. ``state`` is
        copied here, in the caller's thread, before its next update changes it. ``final``:
        the run's last weights, off the schedule."""
        if self.running:
            raise RuntimeError("an evaluation is still running")
        self._abandoned = False  # one given up on by close has ended: running is False
        begun = _Start(env_steps, updates, version, weights, cpu_copy(dict(state)),
                       dict(counters), final)
        self._next = self._multiple_after(env_steps)
        self._thread = threading.Thread(target=self._play, args=(begun,), name="evaluation",
                                        daemon=True)
        self._thread.start()

    def maybe_start(self, env_steps: int, updates: int, version: int,
                    weights: Callable[[], Weights], state: Callable[[], Mapping[str, Any]],
                    counters: Callable[[], Mapping[str, Any]]) -> bool:
        """``start`` if ``due``, with what the callables return (called only then);
        whether it started one."""
        if not self.due(env_steps):
            return False
        self.start(env_steps, updates, version, weights(), state(), counters())
        return True

    def _play(self, begun: _Start) -> None:
        try:
            started = time.monotonic()
            returns = tuple(float(r) for r in self._evaluate(begun.weights, begun.version))
            if not returns:
                raise ValueError("the evaluation played no episode")
            result = EvaluationResult(begun.env_steps, begun.updates, begun.version,
                                      statistics.fmean(returns), returns,
                                      time.monotonic() - started, begun.final)
            if self._abandoned:  # closed while it played: the run has moved on
                return
            improved = self.best is None or result.mean_return > self.best
            if improved and self._checkpoint_dir is not None:  # on disk before it is news
                save_checkpoint(self._checkpoint_dir, begun.state,
                                {**begun.counters, "eval_return": result.mean_return,
                                 "eval_version": begun.version,
                                 "eval_env_steps": begun.env_steps}, name=BEST,
                                run_config=self._run_config)
            with self._lock:
                self.results.append(result)
                self._unpolled.append(result)
                if improved:
                    self.best = result.mean_return
        except BaseException as error:
            self.traceback = traceback.format_exc()
            self.error = f"{type(error).__name__}: {error}"
            log.exception("evaluation failed")

    def raise_failure(self) -> None:
        """Raises ``EvaluationFailed`` if an evaluation raised: the learner loop calls this
        after each update, so a broken evaluation ends the run instead of going quiet."""
        if self.error is not None:
            raise EvaluationFailed(f"evaluation failed: {self.error}")

    def drain(self) -> list[EvaluationResult]:
        """The results since the last call."""
        with self._lock:
            new, self._unpolled = self._unpolled, []
        return new

    @property
    def latest(self) -> EvaluationResult | None:
        with self._lock:
            return self.results[-1] if self.results else None

    def close(self, timeout: float | None = 30.0) -> None:
        """Waits up to ``timeout`` seconds (None: as long as it plays) for an evaluation
        still playing; one that takes longer is left to its daemon thread, and what it
        finds is dropped."""
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            self._abandoned = True
            log.warning("an evaluation still playing after %.0f s was abandoned", timeout)
