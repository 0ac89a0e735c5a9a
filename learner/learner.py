"""The learner loop: prefetched batch -> algorithm update -> priorities back -> weights out.

Plain logic; the Ray actor and ``shoal learner`` are thin shells around ``LearnerLoop.run``.
Priorities go back on a thread of their own, so the update never waits on that round trip
(the learner is the bottleneck of a DQN run on a small machine); a bounded queue keeps
them at most a few updates behind. With an ``Evaluation``, a published version is played
greedily every so many env steps, on a thread of its own too (``learner/evaluation.py``).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
import torch

from shoal.algorithms.base import Learner, StepResult, Weights
from shoal.algorithms.normalization import CLIP, EPSILON, OBSERVATIONS, RunningStats
from shoal.learner.checkpoint import save_checkpoint
from shoal.learner.evaluation import Evaluation
from shoal.learner.policy_lag import LagHistogram, item_lags
from shoal.learner.prefetch import DeviceBatch, Prefetcher, prefetching
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.reconnecting import RETRYABLE


@dataclass
class LearnerStats:
    updates: int = 0
    samples: int = 0
    update_seconds: float = 0.0
    published_version: int = 0
    publishes: int = 0
    stale_dropped: int = 0  # items older than max_policy_lag versions, not trained on
    priority_updates_dropped: int = 0  # sent while the replay service was away
    metrics: deque[dict[str, float]] = field(default_factory=lambda: deque(maxlen=100))


class ObservationNormalizer:
    """Published observation statistics as tensors on the learner's device: a batch's
    observations normalised exactly as the actors' policies normalise theirs."""

    def __init__(self, stats: RunningStats, device: torch.device) -> None:
        self.stats = stats
        self._mean = torch.as_tensor(stats.mean, dtype=torch.float32, device=device)
        self._std = torch.as_tensor(np.sqrt(stats.var + EPSILON), dtype=torch.float32,
                                    device=device)

    def normalize(self, columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: ((column.float() - self._mean) / self._std).clamp(-CLIP, CLIP)
                if name in OBSERVATIONS else column for name, column in columns.items()}


class Publisher(Protocol):
    """Where published weights go: the ParameterService (``parameter_service.py``), or, in
    a deterministic run, straight to its one actor."""

    def publish(self, weights: Weights, version: int | None = None) -> int: ...

    def observation_stats_now(self) -> RunningStats | None:
        """The actors' merged observation statistics (None: the run does not normalise)."""
        ...


class LearnerLoop:
    def __init__(
        self,
        learner: Learner,
        *,
        replay: ReplayClient | None,
        table: str,
        batch_size: int,
        parameters: Publisher,
        device: torch.device,
        publish_every: int = 10,
        max_policy_lag: int | None = None,
        checkpoint_dir: Path | None = None,
        checkpoint_every: int = 0,
        prefetch: int = 4,
        counters: Callable[[], dict[str, Any]] = dict,
        evaluation: Evaluation | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        """``replay``: where ``run`` samples and sends priorities; None for a loop driven
        update by update (``update``, then ``after_update``), as a deterministic run's is."""
        self.learner = learner
        self.stats = LearnerStats(updates=learner.updates)
        self._replay = replay
        self._table = table
        self._batch_size = batch_size
        self._parameters = parameters
        self._device = device
        self._publish_every = publish_every
        self._max_policy_lag = max_policy_lag
        self._checkpoint_dir = checkpoint_dir
        self._checkpoint_every = checkpoint_every
        self._prefetch_depth = prefetch
        self._counters = counters  # run counters a checkpoint keeps (env steps, ...)
        self.evaluation = evaluation  # greedy evaluations of published versions, best.pt
        self._run_config = run_config  # what each checkpoint carries, for shoal eval
        self.prefetcher: Prefetcher | None = None
        self.lag = LagHistogram()  # versions between an item's policy and the newest
        self.priority_error: str | None = None
        self.observation_stats: ObservationNormalizer | None = None  # the last published

    def publish(self) -> Weights:
        """Publishes the learner's weights as the next version; returns them."""
        weights = self.learner.weights()
        stats = self._parameters.observation_stats_now()
        if stats is not None:  # what every actor normalises with from this version on
            self.observation_stats = ObservationNormalizer(stats, self._device)
            weights = {**weights, **stats.to_weights()}
        self.stats.published_version = self._parameters.publish(
            weights, version=self.stats.published_version + 1)
        self.stats.publishes += 1
        return weights

    def _evaluate_if_due(self, published: Weights) -> None:
        """Starts an evaluation of the version just published, when one is due: the weights
        actors play, numbered as they know them, and the learner state that made them."""
        if self.evaluation is None:
            return
        self.evaluation.maybe_start(
            int(self._counters().get("env_steps", 0)), self.learner.updates,
            self.stats.published_version, lambda: published, self.learner.state_dict,
            self._checkpoint_counters)

    def _send_priorities(self, replay: ReplayClient,
                         pending: queue.Queue[tuple[np.ndarray, np.ndarray] | None]) -> None:
        while (item := pending.get()) is not None:
            keys, priorities = item
            try:
                replay.update_priorities(self._table, keys, priorities)
            except grpc.RpcError as error:
                if error.code() in RETRYABLE:  # the service restarts from a checkpoint,
                    self.stats.priority_updates_dropped += 1  # whose priorities are older
                    continue
                self.priority_error = f"{error.code().name}: {error.details()}"
                return  # the loop sees the thread gone and says why

    def run(self, stop: threading.Event, max_updates: int | None = None) -> None:
        """Trains on the replay service's batches until ``stop`` (or ``max_updates``)."""
        replay = self._replay
        if replay is None:
            raise ValueError("replay: run samples from a replay service; without one, drive "
                             "the loop with update and after_update")
        self.publish()  # actors start from the learner's initial weights
        pending: queue.Queue[tuple[np.ndarray, np.ndarray] | None] = queue.Queue(maxsize=4)
        sender = threading.Thread(target=self._send_priorities, args=(replay, pending),
                                  name="priorities", daemon=True)
        sender.start()
        try:
            with prefetching(replay, self._table, self._batch_size, self._device,
                             self._prefetch_depth) as self.prefetcher:
                while not stop.is_set() and (max_updates is None
                                             or self.stats.updates < max_updates):
                    batch = self.prefetcher.get(stop)
                    if batch is None:
                        break
                    batch = self.drop_stale(batch)
                    if batch is None:
                        continue
                    start = time.monotonic()
                    result = self.update(batch)
                    if result.priorities is not None:
                        while sender.is_alive():  # a dead sender: its error ends the run
                            try:
                                pending.put((batch.keys, result.priorities), timeout=0.2)
                                break
                            except queue.Full:
                                continue
                        else:
                            raise RuntimeError(f"sending priorities failed: {self.priority_error}")
                    self.after_update(batch, result, time.monotonic() - start)
        finally:
            with contextlib.suppress(queue.Full):
                pending.put_nowait(None)
            sender.join(timeout=5)
            if self.evaluation is not None:
                self.evaluation.close()

    def update(self, batch: DeviceBatch) -> StepResult:
        """The algorithm's update on ``batch``, its observations normalised as the actors'
        policies normalised theirs."""
        columns = (batch.columns if self.observation_stats is None
                   else self.observation_stats.normalize(batch.columns))
        return self.learner.step(columns, batch.probabilities)

    def after_update(self, batch: DeviceBatch, result: StepResult, seconds: float) -> None:
        """What follows each update, its priorities sent: counters, a failed evaluation
        raised, weights published (and evaluated when due), a checkpoint when due."""
        self.stats.update_seconds += seconds
        self.stats.updates = self.learner.updates
        self.stats.samples += len(batch.keys)
        self.stats.metrics.append({"loss": result.loss, **result.metrics})
        if self.evaluation is not None:
            self.evaluation.raise_failure()
        if self.learner.updates % self._publish_every == 0:
            self._evaluate_if_due(self.publish())
        if (self._checkpoint_every and self._checkpoint_dir is not None
                and self.learner.updates % self._checkpoint_every == 0):
            self.checkpoint()

    def final_evaluation(self, timeout: float | None = 300.0) -> None:
        """Once the loop has ended: evaluates the last weights (published first, so they
        are numbered as the others), unless the last evaluation already played them, and
        waits for it, so best.pt weighs the policy the run ended with: a run stops at its
        target or budget between two scheduled evaluations. Not for a run shorter than one
        evaluation period (a smoke test: five Pong games would outlast it)."""
        evaluation = self.evaluation
        if evaluation is None:
            return
        env_steps = int(self._counters().get("env_steps", 0))
        if env_steps < evaluation.every_env_steps:
            return  # shorter than one evaluation period: a smoke test, not a policy to keep
        evaluation.close()
        latest = evaluation.latest
        if evaluation.running or evaluation.error is not None or (
                latest is not None and latest.updates == self.learner.updates):
            return
        weights = self.publish()
        evaluation.start(env_steps, self.learner.updates,
                         self.stats.published_version, weights, self.learner.state_dict(),
                         self._checkpoint_counters(), final=True)
        evaluation.close(timeout)

    def drop_stale(self, batch: DeviceBatch) -> DeviceBatch | None:
        """Records the batch's policy lag; with ``max_policy_lag`` (asynchronous on-policy
        training), leaves out the items older than that and counts them. None: nothing
        fresh was left to train on."""
        column = batch.columns.get("version")
        if column is None:
            return batch
        lags = item_lags(column.cpu().numpy(), self.stats.published_version)
        if self._max_policy_lag is not None:
            keep = lags <= self._max_policy_lag
            if not keep.all():
                self.stats.stale_dropped += int((~keep).sum())
                if not keep.any():
                    return None
                index = torch.as_tensor(keep.nonzero()[0], device=column.device)
                batch = DeviceBatch(batch.keys[keep], batch.probabilities[index],
                                    {name: tensor[index]
                                     for name, tensor in batch.columns.items()})
                lags = lags[keep]
        self.lag.add(lags)
        return batch

    def checkpoint(self) -> Path | None:
        if self._checkpoint_dir is None:
            return None
        return save_checkpoint(self._checkpoint_dir, self.learner.state_dict(),
                               self._checkpoint_counters(), run_config=self._run_config)

    def _checkpoint_counters(self) -> dict[str, Any]:
        counters = {**self._counters(), "published_version": self.stats.published_version,
                    "samples": self.stats.samples}
        if self.observation_stats is not None:  # as published: what the weights expect
            counters["observation_stats"] = self.observation_stats.stats.to_lists()
        return counters
