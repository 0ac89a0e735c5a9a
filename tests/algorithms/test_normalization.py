"""Observation statistics kept apart and merged: the merge of any split equals numpy on the
concatenated data, they travel among the weights, and a policy behind them sees normalised
observations and counts only what it acts on."""

from __future__ import annotations

import numpy as np
import pytest

from shoal.algorithms.base import EnvSpec, weights_of
from shoal.algorithms.normalization import (
    CLIP,
    NormalizingRolloutPolicy,
    RunningStats,
    normalizing,
    split_weights,
)
from shoal.algorithms.registry import ALGORITHMS

BOX = EnvSpec((3,), "float32", action_shape=(1,), action_low=(-2.0,), action_high=(2.0,))


def test_merged_statistics_equal_numpys_on_the_concatenated_data():
    rng = np.random.default_rng(0)
    parts = [rng.normal(loc=[5.0, -3.0, 100.0], scale=[1.0, 0.01, 30.0], size=(n, 3))
             for n in (1, 7, 500, 64, 2)]
    merged = RunningStats.empty((3,))
    for part in parts:
        merged.add(RunningStats.of(part))
    everything = np.concatenate(parts)
    assert merged.count == len(everything)
    np.testing.assert_allclose(merged.mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.var, everything.var(axis=0), rtol=1e-10)
    backwards = RunningStats.empty((3,))
    for part in reversed(parts):  # the order of the reports does not matter
        backwards.update(part)
    np.testing.assert_allclose(backwards.mean, merged.mean, rtol=1e-12)
    np.testing.assert_allclose(backwards.m2, merged.m2, rtol=1e-10)


def test_normalised_observations_are_standard_and_clipped():
    rng = np.random.default_rng(1)
    data = rng.normal(3.0, 2.0, size=(10_000, 2))
    stats = RunningStats.of(data)
    scaled = stats.normalize(data)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, atol=1e-3)
    assert stats.normalize(np.array([[1e9, -1e9]])).tolist() == [[CLIP, -CLIP]]
    assert (RunningStats.empty((2,)).normalize(data[:3]) == data[:3].astype(np.float32)).all()


def test_statistics_travel_among_the_weights_and_come_out_again():
    stats = RunningStats.of(np.arange(12.0).reshape(4, 3))
    weights = {"layer.weight": np.ones((2, 2), np.float32), **stats.to_weights()}
    network, back = split_weights(weights)
    assert list(network) == ["layer.weight"]
    assert back is not None and back.count == 4
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.m2, stats.m2)
    assert split_weights(network) == (network, None)
    with pytest.raises(ValueError, match="expected shape"):
        stats.add(RunningStats.of(np.zeros((2, 5))))


def test_a_policy_behind_the_statistics_counts_what_it_acts_on_and_nothing_else():
    ppo = ALGORITHMS["ppo"]
    config = ppo.shape(ppo.config_type(), 8)
    inner = ppo.make_policy(config, BOX, 0, 1, 0)
    policy = normalizing(inner, BOX.observation_shape)
    assert isinstance(policy, NormalizingRolloutPolicy)
    published = RunningStats.of(np.random.default_rng(2).normal(50.0, 5.0, size=(100, 3)))
    policy.load({**weights_of(inner.network), **published.to_weights()}, version=3)
    assert policy.version == 3 and policy.stats.count == 100
    obs = np.full((4, 3), 50.0, np.float32)
    policy.act(obs)
    policy.greedy(obs)
    policy.values(obs)
    seen = policy.take_report()
    assert seen.count == 4 and policy.take_report().count == 0  # act only, then afresh
    # the network saw normalised observations: the same as feeding them in by hand
    np.testing.assert_allclose(policy.greedy(obs), inner.greedy(published.normalize(obs)))
