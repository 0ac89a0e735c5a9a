"""``shoal train --deterministic``: a run that two launches with one seed repeat exactly.

A distributed run cannot: its replay service samples ahead of the learner, an actor takes
whichever weight version has arrived when it looks, and priorities land between samples
when the network delivers them, so every interleaving differs from the last. Here one
actor, the replay table and the learner take turns in this thread, in an order fixed by
the run's counters alone:

    the actor steps its envs once -> the items it completed go into the table
    -> while the table's rate limiter allows a batch: sample it (the table's seeded
       generator), update, put its priorities back, publish -> the actor takes the newest
       weights before its next step

The learner trains whenever the rate limiter lets it, as in a distributed run whose
actors are its bottleneck: samples per insert hold as they do there.

Greedy evaluations play when they are due and are waited for. Each part is seeded with
the run's seed as in a distributed run (learner: torch, numpy and Python's generators;
table: its sampling; the actor: its envs and exploration, seed + 1000 x 0), torch uses one
thread, and the learner runs on the CPU: a GPU's kernels do not promise the same sums
twice. The parts are the distributed run's own (``Table``, ``Actor.step``,
``LearnerLoop.update``), with the sockets and threads between them left out; what is left
out is what is not reproduced: throughput, Prometheus endpoints, ``shoal scale``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from shoal.actors.actor import Actor
from shoal.algorithms.base import Weights
from shoal.algorithms.normalization import RunningStats
from shoal.launcher.components import greedy_evaluation, seed_learner
from shoal.launcher.config import TrainConfig
from shoal.launcher.monitor import Progress
from shoal.launcher.run_dir import EventLog
from shoal.launcher.tensorboard import TensorBoardSink
from shoal.launcher.training import Summary, write_failure, write_summary
from shoal.learner.learner import LearnerLoop
from shoal.learner.prefetch import to_device
from shoal.replay_service.sampling import SampleBatch
from shoal.replay_service.table import Table

REPORT_SECONDS = 2.0
"""How often the progress line and a throughput event are written (wall clock: they say
how fast the run goes and change nothing it computes)."""


class InProcessWeights:
    """The learner's ``Publisher`` when its one actor lives in the same thread: the newest
    weights kept for the actor to load, and the observation statistics it reports."""

    def __init__(self, observation_shape: tuple[int, ...] | None) -> None:
        self.version = 0
        self.weights: Weights = {}
        self._stats = None if observation_shape is None else RunningStats.empty(
            observation_shape)

    def publish(self, weights: Weights, version: int | None = None) -> int:
        self.version = self.version + 1 if version is None else version
        self.weights = weights
        return self.version

    def observation_stats_now(self) -> RunningStats | None:
        return None if self._stats is None else self._stats.copy()

    def report(self, stats: RunningStats | None) -> None:
        if stats is not None and self._stats is not None:
            self._stats.add(stats)


def run(config: TrainConfig, run_dir: Path, *,
        started: float | None = None) -> tuple[Summary, bool]:
    """Trains ``config`` in lockstep to its target or step budget, writing the run
    directory a distributed run writes (events.jsonl, TensorBoard events, learner.pt,
    best.pt); returns the summary and whether Ctrl-C ended it early."""
    started = started or time.time()
    definition = config.definition
    device = torch.device("cpu")
    torch.set_num_threads(1)
    seed_learner(config.seed)  # before the networks: their initial weights follow it
    learner = definition.make_learner(config.algorithm, config.env_spec, device)
    table = Table.from_spec(config.table)
    normalize = config.collection.normalize_observations
    weights = InProcessWeights(config.env_spec.observation_shape if normalize else None)
    actor = Actor(definition, config.algorithm, config.env, config.env_spec,
                  config.collection, actor_index=0, num_actors=1, seed=config.seed,
                  replay=None, table=config.table.name, weights=None)
    checkpoints = run_dir / "learner"
    evaluation = greedy_evaluation(config, checkpoints, env_steps=0)
    batch_size = definition.batch_size(config.algorithm, 1)
    loop = LearnerLoop(
        learner, replay=None, table=config.table.name, batch_size=batch_size,
        parameters=weights, device=device, publish_every=definition.publish_every,
        max_policy_lag=config.collection.max_policy_lag, checkpoint_dir=checkpoints,
        checkpoint_every=config.learner.checkpoint_every,
        counters=lambda: {"env_steps": actor.stats.env_steps}, evaluation=evaluation,
        run_config=config.to_dict())

    def follow_weights() -> None:
        if weights.version > actor.policy.version:
            actor.policy.load(weights.weights, weights.version)
            actor.stats.version = weights.version

    def train_once() -> None:
        """One batch from the table, one update, its priorities back, the newest weights
        to the actor; an evaluation it started played to its end."""
        draw = table.sample(batch_size)
        columns = {name: value for name, value in draw.columns.items()
                   if isinstance(value, np.ndarray)}
        assert len(columns) == len(draw.columns), "the table decompresses what it samples"
        batch = loop.drop_stale(to_device(SampleBatch(draw.keys, draw.probabilities,
                                                      columns), device))
        if batch is None:
            return
        begun = time.monotonic()
        result = loop.update(batch)
        if result.priorities is not None:
            table.update_priorities(batch.keys, result.priorities)
        loop.after_update(batch, result, time.monotonic() - begun)
        if evaluation is not None and evaluation.running:
            evaluation.close(timeout=None)
        follow_weights()

    run_dir.mkdir(parents=True, exist_ok=True)
    interrupted = trained = False
    with EventLog(run_dir / "events.jsonl", sinks=[TensorBoardSink(run_dir)]) as events:
        events.write("start", settings=config.to_dict(), settings_from=config.settings,
                     resumed={}, launch="deterministic", host=None)
        progress = Progress(config.run, events)
        loop.publish()  # the actor starts from the learner's initial weights
        follow_weights()
        report = _Reporter(progress)
        try:
            with actor.collecting() as collecting:
                while not progress.over:
                    items = actor.step(collecting)
                    progress.env_steps = actor.stats.env_steps
                    progress.first_step_time = actor.stats.first_step_time
                    progress.add_episodes(actor.stats.drain())
                    waits_for = None  # the version an on-policy actor waits to see pass
                    if items is not None:
                        count = len(next(iter(items[0].values())))
                        while not table.can_insert(count):  # the limiter wants updates first
                            if not table.can_sample(batch_size):
                                raise _stuck(table, batch_size)
                            train_once()
                        table.insert(*items)
                        weights.report(actor.observation_report())
                        if not collecting.collector.may_continue():
                            waits_for = actor.policy.version
                    while table.can_sample(batch_size):  # as far as the limiter lets it
                        train_once()
                    if waits_for is not None and actor.policy.version == waits_for:
                        raise _stuck(table, batch_size)
                    progress.updates = learner.updates
                    if evaluation is not None:
                        progress.add_evaluations([r.as_dict() for r in evaluation.drain()],
                                                 evaluation.best)
                    report.maybe(table, loop)
            trained = True
        except KeyboardInterrupt:
            interrupted = True
        except Exception as error:
            write_failure(events, error, lambda *_: None, {})
            raise
        finally:
            if trained:
                loop.final_evaluation(timeout=None)
                if evaluation is not None:
                    progress.add_evaluations([r.as_dict() for r in evaluation.drain()],
                                             evaluation.best)
            loop.checkpoint()
            if evaluation is not None:
                evaluation.close()
        ended = time.time()
        if evaluation is not None:
            ended -= sum(result.seconds for result in evaluation.results)  # not training
        summary = write_summary(events, progress, run_dir, started, ended, interrupted)
    return summary, interrupted


def _stuck(table: Table, batch_size: int) -> RuntimeError:
    """In one thread nothing else can free a side the rate limiter (or an on-policy
    actor's bounded lag) holds: when neither the actor nor the learner may go on, the run
    would hang, which says the table and the algorithm disagree."""
    return RuntimeError(f"deterministic run stuck: the actor waits for the learner, and "
                        f"table {table.name!r} allows no batch of {batch_size} "
                        f"({table.stats()})")


class _Reporter:
    """The progress line on stderr and a throughput event, every REPORT_SECONDS."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._last = time.monotonic()
        self._steps = progress.env_steps
        self._updates = progress.updates

    def maybe(self, table: Table, loop: LearnerLoop) -> None:
        now = time.monotonic()
        elapsed = now - self._last
        if elapsed < REPORT_SECONDS:
            return
        progress = self._progress
        steps_per_s = (progress.env_steps - self._steps) / elapsed
        updates_per_s = (progress.updates - self._updates) / elapsed
        losses = [metrics["loss"] for metrics in loop.stats.metrics]
        replay = table.stats()
        progress.events.write(
            "throughput", env_steps=progress.env_steps, updates=progress.updates, actors=1,
            pending_actors=0, env_steps_per_s=steps_per_s, updates_per_s=updates_per_s,
            mean_return=progress.mean_return,
            loss=sum(losses) / len(losses) if losses else None,
            learner_samples=loop.stats.samples, stale_dropped=loop.stats.stale_dropped,
            replay_size=replay.size, replay_inserted=replay.inserted_items,
            replay_sampled=replay.sampled_items)
        print(progress.headline(1, steps_per_s, updates_per_s), file=sys.stderr, flush=True)
        self._last, self._steps, self._updates = now, progress.env_steps, progress.updates
