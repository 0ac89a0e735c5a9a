import numpy as np
import pytest
import torch

from shoal.algorithms.base import EnvSpec, weights_of
from shoal.algorithms.dqn import (
    DQNConfig,
    DQNLearner,
    DQNPolicy,
    actor_epsilon,
    double_q_targets,
    td_priorities,
)
from shoal.algorithms.transitions import annealed_beta, importance_weights

CARTPOLE = EnvSpec((4,), "float32", num_actions=2)


def test_double_q_target_uses_online_argmax_and_target_value():
    rewards = torch.tensor([1.0, 0.5, -1.0])
    discounts = torch.tensor([0.9, 0.0, 0.81])
    next_online = torch.tensor([[1.0, 2.0], [5.0, 0.0], [0.0, -1.0]])
    next_target = torch.tensor([[10.0, 3.0], [7.0, 8.0], [4.0, 100.0]])
    targets = double_q_targets(rewards, discounts, next_online, next_target)
    # env 0: online picks action 1, target says 3.0; env 1 terminal; env 2 picks action 0
    torch.testing.assert_close(targets, torch.tensor([1.0 + 0.9 * 3.0, 0.5, -1.0 + 0.81 * 4.0]))


def test_td_priorities_are_the_absolute_n_step_error():
    priorities = td_priorities(q_taken=np.array([1.0, 2.0]), rewards=np.array([0.5, 3.0]),
                               discounts=np.array([0.9, 0.0]),
                               next_q_max=np.array([2.0, 9.0]), epsilon=0.01)
    np.testing.assert_allclose(priorities, [abs(0.5 + 1.8 - 1.0) + 0.01, abs(3.0 - 2.0) + 0.01])


def test_importance_weights_match_the_definition():
    probabilities = torch.tensor([0.1, 0.2, 0.4], dtype=torch.float64)
    n, beta = 50, 0.6
    raw = (n * probabilities) ** -beta
    torch.testing.assert_close(importance_weights(probabilities, beta), raw / raw.max())
    np.testing.assert_allclose(importance_weights(probabilities.numpy(), beta),
                               (raw / raw.max()).numpy())  # the replay demo's numpy arrays


def test_beta_anneals_linearly_to_one_and_stays():
    assert annealed_beta(0.4, 0, 100) == pytest.approx(0.4)
    assert annealed_beta(0.4, 50, 100) == pytest.approx(0.7)
    assert annealed_beta(0.4, 100, 100) == annealed_beta(0.4, 10_000, 100) == 1.0


def test_ape_x_epsilons():
    config = DQNConfig(epsilon_base=0.4, epsilon_exponent=7.0)
    assert actor_epsilon(config, 0, 8) == pytest.approx(0.4)
    assert actor_epsilon(config, 7, 8) == pytest.approx(0.4 ** 8)
    assert actor_epsilon(config, 3, 8) == pytest.approx(0.4 ** 4)
    assert actor_epsilon(config, 0, 1) == pytest.approx(0.4)


def test_epsilon_decays_over_env_steps_counted_across_the_actors_envs():
    """8 envs stepped 100 times are 800 env steps of a 1,600-step schedule: halfway."""
    config = DQNConfig(epsilon_base=0.1, epsilon_exponent=0.0, epsilon_decay_steps=1_600)
    policy = DQNPolicy(config, CARTPOLE, actor_index=0, num_actors=1)
    obs = np.zeros((8, 4), np.float32)
    for _ in range(100):
        policy.act(obs)
    assert policy.epsilon == pytest.approx(1.0 + 0.5 * (0.1 - 1.0))
    for _ in range(100):
        policy.act(obs)
    assert policy.epsilon == pytest.approx(0.1)


def test_policy_initial_priorities_use_its_own_network():
    policy = DQNPolicy(DQNConfig(), CARTPOLE, actor_index=0, num_actors=1)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    step = policy.act(obs)
    q_values = policy._network(torch.from_numpy(obs)).detach().numpy()
    np.testing.assert_allclose(step.extras["q_taken"], q_values[np.arange(5), step.actions])
    items = {"reward": np.ones(5, np.float32), "discount": np.full(5, 0.9, np.float32),
             "next_obs": obs[::-1].copy()}
    next_q_max = policy._network(torch.from_numpy(items["next_obs"])).max(1).values.detach()
    expected = np.abs(1 + 0.9 * next_q_max.numpy() - step.extras["q_taken"]) + 1e-3
    np.testing.assert_allclose(policy.initial_priorities(items, step.extras), expected,
                               rtol=1e-5)


def test_learner_reduces_td_error_and_copies_the_target_every_c_updates():
    torch.manual_seed(0)
    config = DQNConfig(target_update_interval=5, learning_rate=1e-2)
    learner = DQNLearner(config, CARTPOLE, torch.device("cpu"))
    batch = {"obs": torch.randn(32, 4), "next_obs": torch.randn(32, 4),
             "action": torch.randint(0, 2, (32,)), "reward": torch.ones(32),
             "discount": torch.zeros(32)}  # terminal: the target is the reward, 1
    probabilities = torch.full((32,), 1 / 32, dtype=torch.float64)
    first = learner.step(batch, probabilities).priorities.mean()
    for _ in range(3):
        learner.step(batch, probabilities)
    target_before = [p.clone() for p in learner.target.parameters()]
    assert any(not torch.equal(a, b) for a, b in
               zip(target_before, learner.online.parameters(), strict=True))
    last = learner.step(batch, probabilities)  # the 5th update copies online -> target
    assert all(torch.equal(a, b) for a, b in
               zip(learner.target.parameters(), learner.online.parameters(), strict=True))
    assert last.priorities.mean() < first
    restored = DQNLearner(config, CARTPOLE, torch.device("cpu"))
    restored.load_state_dict(learner.state_dict())
    assert restored.updates == 5


def test_step_size_falls_linearly_to_its_final_value_and_resumes_where_it_was():
    config = DQNConfig(learning_rate=3e-3, learning_rate_final=1e-3, lr_anneal_updates=4)
    learner = DQNLearner(config, CARTPOLE, torch.device("cpu"))
    batch = {"obs": torch.randn(8, 4), "next_obs": torch.randn(8, 4),
             "action": torch.randint(0, 2, (8,)), "reward": torch.ones(8),
             "discount": torch.zeros(8)}
    probabilities = torch.full((8,), 1 / 8, dtype=torch.float64)
    rates = [learner.step(batch, probabilities).metrics["learning_rate"] for _ in range(2)]
    assert rates == pytest.approx([2.5e-3, 2e-3])
    restored = DQNLearner(config, CARTPOLE, torch.device("cpu"))
    restored.load_state_dict(learner.state_dict())
    rates = [restored.step(batch, probabilities).metrics["learning_rate"] for _ in range(4)]
    assert rates == pytest.approx([1.5e-3, 1e-3, 1e-3, 1e-3])


def test_an_actor_whose_first_weights_are_trained_starts_at_its_final_epsilon():
    config = DQNConfig()
    fresh = DQNPolicy(config, CARTPOLE, actor_index=0, num_actors=1)
    fresh.load(weights_of(fresh._network), version=1)  # the learner's initial weights
    assert fresh.epsilon == 1.0
    joining = DQNPolicy(config, CARTPOLE, actor_index=0, num_actors=1)
    joining.load(weights_of(joining._network), version=300)
    assert joining.epsilon == pytest.approx(joining.final_epsilon)
