"""Observation statistics across processes, on real gRPC: actors' reports merge at the
learner's ParameterService exactly as numpy on the concatenated data, a bad report is
refused and changes nothing, the learner publishes the merged statistics with the weights,
normalises its batches with them and keeps them in its checkpoint counters."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
import torch

from shoal.actors.actor import Actor
from shoal.actors.config import CollectionConfig
from shoal.actors.envs import probe_spec
from shoal.actors.weights import WeightFollower
from shoal.algorithms.normalization import RunningStats, normalizing, split_weights
from shoal.algorithms.ppo import ALGORITHM as PPO
from shoal.algorithms.ppo import PPOConfig, PPOLearner
from shoal.learner.learner import LearnerLoop, ObservationNormalizer
from shoal.learner.parameter_service import ParameterServer
from shoal.protos import codec, parameters_pb2, parameters_pb2_grpc
from shoal.protos.transport import bearer_metadata
from shoal.replay_service import ReplayClient, ReplayServer
from shoal.replay_service.table import Table

from ..conftest import TOKEN, wait_until

SPEC = probe_spec("CartPole-v1")
SHAPE = SPEC.observation_shape


def test_reports_from_several_actors_merge_as_numpy_on_all_their_data():
    rng = np.random.default_rng(0)
    parts = [rng.normal([1.0, -2.0, 0.1, 30.0], [0.5, 2.0, 0.01, 10.0], size=(n, 4))
             for n in (3, 200, 57)]
    with (ParameterServer(token=TOKEN, observation_shape=SHAPE) as parameters,
          WeightFollower(parameters.address, TOKEN) as first,
          WeightFollower(parameters.address, TOKEN) as second):
        first.report(RunningStats.of(parts[0]))
        second.report(RunningStats.of(parts[1]))
        first.report(RunningStats.of(parts[2]))
        total = sum(len(part) for part in parts)
        # the learner merges a report before the actor's callback counts it as taken
        wait_until(lambda: parameters.observation_stats_now().count == total
                   and first.reported + second.reported == total,
                   what="every report merged and acknowledged")
        merged = parameters.observation_stats_now()
    everything = np.concatenate(parts)
    np.testing.assert_allclose(merged.mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.var, everything.var(axis=0), rtol=1e-10)
    assert first.reported + second.reported == total


def test_a_bad_report_is_refused_by_field_and_changes_nothing():
    with (ParameterServer(token=TOKEN, observation_shape=SHAPE) as parameters,
          grpc.insecure_channel(parameters.address) as channel):
        stub = parameters_pb2_grpc.ParameterServiceStub(channel)
        good = RunningStats.of(np.ones((5, 4)))
        parameters.merge_observation_stats(good)

        def report(count: int, mean: np.ndarray, m2: np.ndarray) -> grpc.RpcError:
            request = parameters_pb2.ObservationStats(count=count)
            codec.encode_tensor(mean, out=request.mean)
            codec.encode_tensor(m2, out=request.m2)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Report(request, metadata=bearer_metadata(TOKEN), timeout=30)
            return raised.value

        wrong_shape = report(3, np.zeros(5), np.zeros(4))
        assert wrong_shape.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert wrong_shape.details().startswith("mean: ")
        not_finite = report(3, np.zeros(4), np.array([0.0, np.nan, 0.0, 0.0]))
        assert not_finite.details().startswith("m2: expected")
        negative = report(-1, np.zeros(4), np.zeros(4))
        assert negative.details().startswith("count: expected >= 0")
        after = parameters.observation_stats_now()
        assert after.count == 5 and (after.mean == 1.0).all()  # unchanged
    with (ParameterServer(token=TOKEN) as plain,
          grpc.insecure_channel(plain.address) as channel):
        stub = parameters_pb2_grpc.ParameterServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Report(parameters_pb2.ObservationStats(), metadata=bearer_metadata(TOKEN),
                        timeout=30)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_an_actor_reports_what_it_acts_on_and_the_learner_publishes_and_keeps_it():
    steps, envs = 8, 2
    config = PPOConfig(rollout_length=steps, update_epochs=1)
    table = Table.from_spec(PPO.table(config, SPEC, envs))
    learner = PPOLearner(config, SPEC, torch.device("cpu"))
    stop = threading.Event()
    with (ReplayServer([table], token=TOKEN) as server,
          ReplayClient(server.address, TOKEN) as replay,
          ParameterServer(token=TOKEN, observation_shape=SHAPE) as parameters,
          WeightFollower(parameters.address, TOKEN) as follower):
        loop = LearnerLoop(learner, replay=replay, table="rollouts", batch_size=1,
                           parameters=parameters, device=torch.device("cpu"), publish_every=1)
        actor = Actor(PPO, config, "CartPole-v1", SPEC,
                      CollectionConfig(envs, normalize_observations=True), actor_index=0,
                      num_actors=1, seed=0, replay=replay, table="rollouts", weights=follower)
        thread = threading.Thread(target=actor.run, args=(stop,))
        thread.start()
        try:
            learning = threading.Thread(target=loop.run, args=(stop, 2))
            learning.start()
            learning.join(120)
            assert not learning.is_alive(), "two updates did not happen"
            wait_until(lambda: parameters.observation_stats_now().count >= 2 * steps * envs,
                       what="two rollouts' observations reported")
        finally:
            stop.set()
            thread.join(30)
        published = loop.publish()
    network, stats = split_weights(published)
    assert stats is not None and stats.count >= 2 * steps * envs
    assert set(network) == set(learner.weights())
    # the actors' policies load the published statistics with the weights
    policy = normalizing(PPO.make_policy(config, SPEC, 0, 1, 0), SHAPE)
    policy.load(published, version=9)
    np.testing.assert_array_equal(policy.stats.mean, stats.mean)
    # the learner normalises a batch's observations as the policies do
    obs = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    columns = ObservationNormalizer(stats, torch.device("cpu")).normalize(
        {"obs": torch.from_numpy(obs), "reward": torch.ones(6)})
    np.testing.assert_allclose(columns["obs"].numpy(), stats.normalize(obs), atol=1e-5)
    assert (columns["reward"] == 1).all()
    # the checkpoint keeps them; a resumed service starts from them
    saved = RunningStats.from_lists(loop._checkpoint_counters()["observation_stats"])
    np.testing.assert_array_equal(saved.m2, stats.m2)
    with ParameterServer(token=TOKEN, observation_shape=SHAPE) as resumed:
        resumed.restore_observation_stats(saved)
        assert resumed.observation_stats_now().count == stats.count
