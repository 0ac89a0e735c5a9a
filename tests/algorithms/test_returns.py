"""GAE and discounted returns against a direct, slow computation from their definitions."""

import numpy as np
import pytest
import torch

from shoal.algorithms.returns import advantages_and_returns


def episodes(seed: int, steps: int = 40, envs: int = 3):
    """A random rollout with terminations and truncations in it."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    terminated = rng.random((steps, envs)) < 0.1
    truncated = ~terminated & (rng.random((steps, envs)) < 0.08)
    final_values = rng.normal(size=(steps, envs))  # V(final obs) where an episode was cut
    last_values = rng.normal(size=envs)            # V(s_T) after the rollout
    next_values = np.vstack([values[1:], last_values[None]])
    next_values = np.where(truncated, final_values, next_values)
    next_values = np.where(terminated, 999.0, next_values)  # must not be used
    return rewards, values, next_values, terminated, truncated


def direct(rewards, values, next_values, terminated, truncated, gamma, lam):
    """A_t = sum_k (gamma lambda)^k delta_{t+k} over the rest of the episode, step by step."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for e in range(envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                bootstrap = 0.0 if terminated[k, e] else gamma * next_values[k, e]
                delta = rewards[k, e] + bootstrap - values[k, e]
                total += weight * delta
                if terminated[k, e] or truncated[k, e]:
                    break  # the episode ends at k: nothing later belongs to it
                weight *= gamma * lam
            advantages[t, e] = total
    return advantages


def direct_discounted_return(rewards, next_values, terminated, truncated, gamma, t, e):
    """sum_k gamma^k r_{t+k}, plus gamma^n V where the rollout or a truncation cut it."""
    total, discount = 0.0, 1.0
    for k in range(t, len(rewards)):
        total += discount * rewards[k, e]
        discount *= gamma
        if terminated[k, e]:
            return total
        if truncated[k, e] or k == len(rewards) - 1:
            return total + discount * next_values[k, e]
    raise AssertionError("unreachable")


def tensors(*arrays):
    return [torch.as_tensor(a, dtype=torch.float64) if a.dtype != bool else torch.as_tensor(a)
            for a in arrays]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.0), (0.97, 1.0)])
def test_gae_matches_the_direct_sum_with_episode_boundaries(seed, gamma, lam):
    rewards, values, next_values, terminated, truncated = episodes(seed)
    assert terminated.any() and truncated.any()  # both kinds of boundary occur
    advantages, returns = advantages_and_returns(
        *tensors(rewards, values, next_values, terminated, truncated), gamma=gamma, lam=lam)
    expected = direct(rewards, values, next_values, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(returns.numpy(), expected + values, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_lambda_one_gives_the_discounted_return_bootstrapped_at_cuts(seed):
    rewards, values, next_values, terminated, truncated = episodes(seed)
    _, returns = advantages_and_returns(*tensors(rewards, values, next_values, terminated,
                                                 truncated), gamma=0.95, lam=1.0)
    for t, e in [(0, 0), (5, 1), (17, 2), (39, 0), (23, 1)]:
        assert returns[t, e].item() == pytest.approx(direct_discounted_return(
            rewards, next_values, terminated, truncated, 0.95, t, e), abs=1e-10)


def test_a_truncated_step_bootstraps_and_a_terminated_one_does_not():
    rewards = torch.ones(1, 2, dtype=torch.float64)
    values = torch.zeros(1, 2, dtype=torch.float64)
    next_values = torch.full((1, 2), 10.0, dtype=torch.float64)
    _, returns = advantages_and_returns(
        rewards, values, next_values, terminated=torch.tensor([[True, False]]),
        truncated=torch.tensor([[False, True]]), gamma=0.5, lam=0.9)
    assert returns.tolist() == [[1.0, 1.0 + 0.5 * 10.0]]


def test_mismatched_shapes_name_the_shapes():
    with pytest.raises(ValueError, match=r"values \(3, 2\)"):
        advantages_and_returns(torch.zeros(4, 2), torch.zeros(3, 2), torch.zeros(4, 2),
                               torch.zeros(4, 2), torch.zeros(4, 2), 0.99, 0.95)
