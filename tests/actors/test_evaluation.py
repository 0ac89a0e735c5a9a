"""The greedy player: real policies of fresh algorithms on real gymnasium envs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shoal.actors.envs import probe_spec
from shoal.actors.evaluation import GreedyEvaluator, play_greedy
from shoal.algorithms.base import Policy, PolicyStep, Weights, weights_of
from shoal.algorithms.registry import ALGORITHMS


def fresh_policy(algo: str, env: str, seed: int = 0) -> Policy:
    definition = ALGORITHMS[algo]
    torch.manual_seed(seed)
    return definition.make_policy(definition.config_type(), probe_spec(env), 0, 1, seed)


class Recording:
    """A real policy, with the batch size of every ``greedy`` call written down."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.version = policy.version
        self.batches: list[int] = []

    def act(self, observations: np.ndarray) -> PolicyStep:
        return self.policy.act(observations)

    def greedy(self, observations: np.ndarray) -> np.ndarray:
        self.batches.append(len(observations))
        return self.policy.greedy(observations)

    def load(self, weights: Weights, version: int) -> None:
        self.policy.load(weights, version)


@pytest.mark.parametrize(("algo", "env"), [("dqn", "CartPole-v1"), ("ppo", "CartPole-v1"),
                                           ("sac", "Pendulum-v1")])
def test_returns_one_finite_return_per_episode_the_same_for_the_same_seeds(algo, env):
    policy = fresh_policy(algo, env)
    first = play_greedy(policy, env, episodes=3, seed=7)
    again = play_greedy(policy, env, episodes=3, seed=7)
    assert len(first) == 3 and all(math.isfinite(r) for r in first), first
    assert first == again
    if env == "CartPole-v1":  # +1 a step, at least one step
        assert all(r >= 1 and r == int(r) for r in first), first


def test_all_episodes_play_at_once_one_greedy_call_per_step():
    """One env per episode, their observations batched: the first call sees every env,
    later ones only those still playing, and there are as many calls as the longest
    episode has steps (CartPole: the return is the episode's length)."""
    recording = Recording(fresh_policy("ppo", "CartPole-v1"))
    returns = play_greedy(recording, "CartPole-v1", episodes=4, seed=0)
    assert recording.batches[0] == 4
    assert recording.batches == sorted(recording.batches, reverse=True)
    assert len(recording.batches) == max(returns)
    assert sum(recording.batches) == sum(returns)


def test_episode_i_is_seeded_seed_plus_i():
    policy = fresh_policy("dqn", "CartPole-v1")
    together = play_greedy(policy, "CartPole-v1", episodes=3, seed=100)
    alone = [play_greedy(policy, "CartPole-v1", episodes=1, seed=100 + i)[0] for i in range(3)]
    assert together == alone


def test_evaluator_plays_the_weights_it_is_given_and_leaves_torchs_stream_alone():
    definition = ALGORITHMS["ppo"]
    config, spec = definition.config_type(), probe_spec("CartPole-v1")
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    evaluator = GreedyEvaluator(definition, config, "CartPole-v1", spec, episodes=2, seed=11)
    assert torch.equal(torch.random.get_rng_state(), before)

    torch.manual_seed(99)  # other initial weights than the evaluator's policy drew
    learner = definition.make_learner(config, spec, torch.device("cpu"))
    returns = evaluator(learner.weights(), version=9)
    assert evaluator.policy.version == 9
    played = weights_of(evaluator.policy.network)
    assert all(np.array_equal(played[k], v) for k, v in learner.weights().items())
    # the same weights in another policy, from the same start states: the same returns
    other = fresh_policy("ppo", "CartPole-v1", seed=6)
    other.load(learner.weights(), 9)
    assert returns == play_greedy(other, "CartPole-v1", episodes=2, seed=11)
    assert evaluator(learner.weights(), version=10) == returns  # the same start states


def test_a_positive_episode_count_is_required():
    with pytest.raises(ValueError, match="episodes: expected a positive count, got 0"):
        play_greedy(fresh_policy("dqn", "CartPole-v1"), "CartPole-v1", episodes=0, seed=0)
