"""Asynchronous on-policy training (``max_policy_lag`` K): the learner leaves out rollouts
more than K versions old and counts them; an actor writes at most K + 1 rollouts per
weight version. Real replay server, ParameterService and gRPC on loopback."""

from __future__ import annotations

import threading

import numpy as np
import torch

from shoal.actors.actor import Actor
from shoal.actors.config import CollectionConfig
from shoal.actors.envs import probe_spec
from shoal.actors.weights import WeightFollower
from shoal.algorithms.actor_critic import ActorCritic, rollout_table
from shoal.algorithms.base import weights_of
from shoal.algorithms.ppo import ALGORITHM as PPO
from shoal.algorithms.ppo import PPOConfig, PPOLearner
from shoal.learner.learner import LearnerLoop
from shoal.learner.parameter_service import ParameterServer
from shoal.learner.policy_lag import item_lags
from shoal.replay_service import ReplayClient, ReplayServer
from shoal.replay_service.table import Table

from ..conftest import TOKEN, wait_until

SPEC = probe_spec("CartPole-v1")
STEPS, ENVS = 4, 2


def test_an_items_lag_is_that_of_its_oldest_step():
    versions = np.array([[[9, 9], [9, 10]],     # spans a weight change: oldest 9
                         [[7, 10], [10, 10]],   # one step from version 7
                         [[10, 10], [10, 10]]])
    assert item_lags(versions, newest=10).tolist() == [1, 3, 0]
    assert item_lags(np.array([4, 9]), newest=12).tolist() == [8, 3]  # transitions


def rollout(version_of_steps: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (1, STEPS, ENVS)
    return {"obs": rng.normal(size=(*shape, 4)).astype(np.float32),
            "action": rng.integers(0, 2, size=shape), "reward": np.ones(shape, np.float32),
            "terminated": np.zeros(shape, bool), "truncated": np.zeros(shape, bool),
            "log_prob": np.full(shape, np.log(0.5), np.float32),
            "value": np.zeros(shape, np.float32), "next_value": np.zeros(shape, np.float32),
            "version": np.broadcast_to(version_of_steps, shape).astype(np.int64)}


def test_learner_leaves_out_and_counts_rollouts_older_than_the_lag_bound():
    table = Table.from_spec(rollout_table(PPOConfig(rollout_length=STEPS), SPEC, ENVS))
    config = PPOConfig(update_epochs=1, num_minibatches=1)
    learner = PPOLearner(config, SPEC, torch.device("cpu"))
    with (ReplayServer([table], token=TOKEN) as server,
          ReplayClient(server.address, TOKEN) as replay,
          ParameterServer(token=TOKEN) as parameters):
        # The learner resumes at version 10 and publishes 11 when it starts. FIFO order:
        # two stale rollouts (versions 3; 7 then 11 within one), then two fresh ones.
        mixed = np.array([7, 11, 11, 11]).reshape(STEPS, 1)
        with replay.writer("rollouts") as writer:
            for index, versions in enumerate([np.array(3), mixed, np.array(11), np.array(11)]):
                writer.extend(rollout(versions, seed=index))
        wait_until(lambda: table.stats().size == 4, what="four rollouts stored")
        loop = LearnerLoop(learner, replay=replay, table="rollouts", batch_size=2,
                           parameters=parameters, device=torch.device("cpu"),
                           publish_every=1, max_policy_lag=2)
        loop.stats.published_version = 10
        loop.run(threading.Event(), max_updates=1)

    assert loop.stats.stale_dropped == 2
    assert loop.stats.updates == 1          # the all-stale batch was not trained on
    assert loop.stats.samples == 2          # the fresh pair was, both at lag 0
    buckets, total = loop.lag.snapshot()
    assert buckets[0] == ("0", 2.0) and total == 0.0


def test_asynchronous_actor_stays_at_most_lag_plus_one_rollouts_ahead():
    lag = 2
    config = PPOConfig(rollout_length=STEPS)
    table = Table.from_spec(PPO.table(config, SPEC, ENVS))
    weights = weights_of(ActorCritic(SPEC, config.hidden))
    stop = threading.Event()
    with (ReplayServer([table], token=TOKEN) as server,
          ReplayClient(server.address, TOKEN) as replay,
          ParameterServer(token=TOKEN) as parameters,
          WeightFollower(parameters.address, TOKEN) as follower):
        parameters.publish(weights, version=1)
        wait_until(lambda: follower.newer_than(0) is not None, what="version 1 at the actor")
        actor = Actor(PPO, config, "CartPole-v1", SPEC, CollectionConfig(ENVS, max_policy_lag=lag),
                      actor_index=0, num_actors=1, seed=0, replay=replay, table="rollouts",
                      weights=follower)
        thread = threading.Thread(target=actor.run, args=(stop,))
        thread.start()
        try:
            wait_until(lambda: actor.stats.items_sent == lag + 1, what="K + 1 rollouts")
            parameters.publish(weights, version=2)  # one update: room for one more
            wait_until(lambda: actor.stats.items_sent == lag + 2, what="one more rollout")
            parameters.publish(weights, version=4)  # two more updates: two more
            wait_until(lambda: actor.stats.items_sent == lag + 4, what="two more rollouts")
        finally:
            stop.set()
            thread.join(10)
        count = lag + 4
        wait_until(lambda: table.stats().size >= count, what="rollouts stored")
        with replay.sample("rollouts", count, num_batches=1) as batches:
            versions = next(iter(batches)).columns["version"]
    per_rollout = versions.reshape(len(versions), -1).max(axis=1)
    # Had the actor not waited, more rollouts of the older versions would sit in between.
    assert per_rollout.tolist() == [1] * (lag + 1) + [2] + [4, 4]
