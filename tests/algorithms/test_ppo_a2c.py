"""PPO's objectives on hand-made numbers, and the PPO and A2C updates on a problem with a
known answer."""

import numpy as np
import pytest
import torch

from shoal.algorithms.actor_critic import ActorCritic, ActorCriticPolicy
from shoal.algorithms.base import EnvSpec
from shoal.algorithms.ppo import (
    PPOConfig,
    PPOLearner,
    adapt_kl_beta,
    approximate_kl,
    clipped_surrogate,
)

VECTOR = EnvSpec(observation_shape=(4,), observation_dtype="float32", num_actions=2)


def test_clipped_surrogate_takes_the_pessimistic_term():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5, 0.5])
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0])
    # min(rA, clip(r)A): 0.5 (unclipped smaller), -1, 1.2 (clipped), -1.5 (unclipped), -0.8
    expected = -(0.5 - 1.0 + 1.2 - 1.5 - 0.8) / 5
    assert clipped_surrogate(ratio, advantages, clip=0.2).item() == pytest.approx(expected)


@pytest.mark.parametrize(("kl", "beta"), [(0.005, 0.5), (0.02, 2.0), (0.01, 1.0),
                                          (0.0067, 1.0), (0.0149, 1.0)])
def test_adaptive_kl_beta_halves_below_and_doubles_above_the_band(kl, beta):
    assert adapt_kl_beta(1.0, kl, target=0.01) == beta


def test_approximate_kl_is_zero_for_the_same_policy_and_positive_otherwise():
    old = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    assert approximate_kl(old, old).item() == 0.0
    assert approximate_kl(old, old + torch.tensor([0.1, -0.2, 0.05])).item() > 0.0


def test_unknown_objective_is_refused_by_name():
    with pytest.raises(ValueError, match="objective: expected one of"):
        PPOConfig(objective="trust-me")


def bandit_rollouts(policy: ActorCriticPolicy, rng: np.random.Generator, rollouts: int = 2,
                    steps: int = 8, envs: int = 4) -> dict[str, torch.Tensor]:
    """Action 1 pays 1, action 0 pays 0, every step ends its episode."""
    obs = rng.normal(size=(rollouts, steps, envs, 4)).astype(np.float32)
    step = policy.act(obs.reshape(-1, 4))
    actions = step.actions.reshape(rollouts, steps, envs)
    shape = (rollouts, steps, envs)
    return {"obs": torch.from_numpy(obs), "action": torch.from_numpy(actions),
            "reward": torch.from_numpy((actions == 1).astype(np.float32)),
            "terminated": torch.ones(shape, dtype=torch.bool),
            "truncated": torch.zeros(shape, dtype=torch.bool),
            "log_prob": torch.from_numpy(step.extras["log_prob"].reshape(shape)),
            "value": torch.from_numpy(step.extras["value"].reshape(shape)),
            "next_value": torch.zeros(shape),
            "version": torch.zeros(shape, dtype=torch.int64)}


def paying_probability(network: ActorCritic, probe: torch.Tensor) -> float:
    """The policy's mean probability of the paying action over some observations."""
    with torch.no_grad():
        return network.distribution(probe).probs[:, 1].mean().item()


@pytest.mark.parametrize("objective", ["clip", "kl_adaptive"])
def test_updates_move_the_policy_toward_the_paying_action(objective):
    torch.manual_seed(0)
    config = PPOConfig(objective=objective, learning_rate=3e-3)
    learner = PPOLearner(config, VECTOR, torch.device("cpu"))
    policy = ActorCriticPolicy(VECTOR, config.hidden, seed=0)
    rng = np.random.default_rng(0)
    probe = torch.from_numpy(rng.normal(size=(256, 4)).astype(np.float32))
    before = paying_probability(learner.network, probe)
    for version in range(1, 16):
        policy.load(learner.weights(), version)
        result = learner.step(bandit_rollouts(policy, rng))
    assert before < 0.6 and paying_probability(learner.network, probe) > 0.9
    assert learner.updates == 15 and result.metrics["approx_kl"] >= 0.0
    if objective == "kl_adaptive":
        assert result.metrics["kl_beta"] != config.kl_beta  # the rule moved it


def test_gaussian_policy_for_box_actions_acts_and_updates():
    spec = EnvSpec(observation_shape=(3,), observation_dtype="float32", action_shape=(1,),
                   action_low=(-2.0,), action_high=(2.0,))
    config = PPOConfig()
    policy = ActorCriticPolicy(spec, config.hidden, seed=1)
    learner = PPOLearner(config, spec, torch.device("cpu"))
    step = policy.act(np.zeros((6, 3), np.float32))
    assert step.actions.shape == (6, 1) and step.extras["log_prob"].shape == (6,)
    # a standard normal at its mean has log density -log(2 pi)/2 per dimension
    assert step.extras["log_prob"].max() <= -0.5 * np.log(2 * np.pi) + 1e-6
    shape = (1, 2, 3)
    batch = {"obs": torch.randn(*shape, 3), "action": torch.randn(*shape, 1),
             "reward": torch.randn(shape), "terminated": torch.zeros(shape, dtype=torch.bool),
             "truncated": torch.zeros(shape, dtype=torch.bool),
             "log_prob": torch.full(shape, -1.0), "value": torch.zeros(shape),
             "next_value": torch.zeros(shape), "version": torch.zeros(shape, dtype=torch.int64)}
    metrics = learner.step(batch).metrics
    assert all(np.isfinite(value) for value in metrics.values())


def test_a2c_update_moves_the_policy_toward_the_paying_action():
    from shoal.algorithms.a2c import A2CConfig, A2CLearner

    torch.manual_seed(0)
    config = A2CConfig(learning_rate=1e-2)
    learner = A2CLearner(config, VECTOR, torch.device("cpu"))
    policy = ActorCriticPolicy(VECTOR, config.hidden, seed=0)
    rng = np.random.default_rng(0)
    probe = torch.from_numpy(rng.normal(size=(256, 4)).astype(np.float32))
    before = paying_probability(learner.network, probe)
    for version in range(1, 41):
        policy.load(learner.weights(), version)
        learner.step(bandit_rollouts(policy, rng))
    assert before < 0.6 and paying_probability(learner.network, probe) > 0.8
