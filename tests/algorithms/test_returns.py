"""GAE, discounted returns and V-trace against direct, slow computations from their
definitions."""

import numpy as np
import pytest
import torch

from shoal.algorithms.returns import advantages_and_returns, vtrace


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


# ------------------------------------------------------------------------------ V-trace


def direct_vtrace(log_ratios, rewards, values, next_values, terminated, truncated, gamma,
                  rho_bar, c_bar):
    """v_s = V(x_s) + sum_{t>=s} gamma^(t-s) (prod_{i=s}^{t-1} c_i) delta_t over the rest
    of the episode within the rollout, and A_s = rho_s (r_s + gamma v_{s+1} - V(x_s)),
    with v_{s+1} the bootstrap value where the episode or the rollout ends at s."""
    steps, envs = rewards.shape
    ratios = np.exp(log_ratios)
    rhos, cs = np.minimum(rho_bar, ratios), np.minimum(c_bar, ratios)

    def ends(k, e):
        return terminated[k, e] or truncated[k, e] or k == steps - 1

    targets = np.zeros((steps, envs))
    for e in range(envs):
        for s in range(steps):
            total, trace = 0.0, 1.0
            for t in range(s, steps):
                bootstrap = 0.0 if terminated[t, e] else gamma * next_values[t, e]
                total += gamma ** (t - s) * trace * rhos[t, e] * (
                    rewards[t, e] + bootstrap - values[t, e])
                if ends(t, e):
                    break
                trace *= cs[t, e]
            targets[s, e] = values[s, e] + total
    advantages = np.zeros((steps, envs))
    for e in range(envs):
        for s in range(steps):
            following = next_values[s, e] if ends(s, e) else targets[s + 1, e]
            bootstrap = 0.0 if terminated[s, e] else gamma * following
            advantages[s, e] = rhos[s, e] * (rewards[s, e] + bootstrap - values[s, e])
    return targets, advantages


def log_ratios_of(seed, shape):
    """Importance ratios spread on both sides of 1 (0.2x to 5x), so the caps bite."""
    return np.random.default_rng(seed + 100).uniform(np.log(0.2), np.log(5.0), size=shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("rho_bar", "c_bar"), [(1.0, 1.0), (2.0, 0.5), (np.inf, np.inf)])
def test_vtrace_matches_the_direct_sum_with_episode_boundaries(seed, rho_bar, c_bar):
    rewards, values, next_values, terminated, truncated = episodes(seed)
    assert terminated.any() and truncated.any()  # both kinds of boundary occur
    log_ratios = log_ratios_of(seed, rewards.shape)
    targets, advantages = vtrace(
        *tensors(log_ratios, rewards, values, next_values, terminated, truncated),
        gamma=0.97, rho_bar=rho_bar, c_bar=c_bar)
    expected_targets, expected_advantages = direct_vtrace(
        log_ratios, rewards, values, next_values, terminated, truncated, 0.97, rho_bar, c_bar)
    np.testing.assert_allclose(targets.numpy(), expected_targets, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(advantages.numpy(), expected_advantages, rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_vtrace_on_policy_without_caps_is_the_n_step_return(seed):
    """pi = mu and rho-bar = c-bar = inf: every weight is 1, v_s is the discounted return
    bootstrapped where the rollout or a truncation cut it, and A_s is GAE(1)'s."""
    rewards, values, next_values, terminated, truncated = episodes(seed)
    inputs = tensors(np.zeros_like(rewards), rewards, values, next_values, terminated,
                     truncated)
    targets, advantages = vtrace(*inputs, gamma=0.95, rho_bar=np.inf, c_bar=np.inf)
    steps, envs = rewards.shape
    for t in range(steps):
        for e in range(envs):
            assert targets[t, e].item() == pytest.approx(direct_discounted_return(
                rewards, next_values, terminated, truncated, 0.95, t, e), abs=1e-10)
    gae_advantages, gae_returns = advantages_and_returns(*inputs[1:], gamma=0.95, lam=1.0)
    torch.testing.assert_close(targets, gae_returns)
    torch.testing.assert_close(advantages, gae_advantages)


def test_vtrace_caps_bound_the_weights():
    rewards, values, next_values, terminated, truncated = episodes(3)
    inputs = tensors(rewards, values, next_values, terminated, truncated)
    big = torch.full(rewards.shape, np.log(50.0), dtype=torch.float64)
    capped = torch.full(rewards.shape, np.log(1.5), dtype=torch.float64)
    # ratios above both caps weigh exactly as ratios at the caps
    torch.testing.assert_close(vtrace(big, *inputs, 0.9, rho_bar=1.5, c_bar=1.5),
                               vtrace(capped, *inputs, 0.9, rho_bar=1.5, c_bar=1.5))
    # c-bar -> 0 cuts every trace: v_s = V(x_s) + rho_s delta_s, one TD error
    tiny_c, _ = vtrace(big, *inputs, 0.9, rho_bar=1.5, c_bar=1e-12)
    alive = 1.0 - terminated
    one_step = values + 1.5 * (rewards + 0.9 * alive * next_values - values)
    np.testing.assert_allclose(tiny_c.numpy(), one_step, rtol=1e-9, atol=1e-9)
    # below the caps the weights are the ratios themselves (no cap is applied)
    low = torch.full(rewards.shape, np.log(0.5), dtype=torch.float64)
    expected, _ = direct_vtrace(low.numpy(), rewards, values, next_values, terminated,
                                truncated, 0.9, 0.5, 0.5)
    np.testing.assert_allclose(vtrace(low, *inputs, 0.9, rho_bar=1.0, c_bar=1.0)[0].numpy(),
                               expected, rtol=1e-10, atol=1e-10)


def test_vtrace_mismatched_shapes_name_the_shapes():
    with pytest.raises(ValueError, match=r"log_ratios \(3, 2\)"):
        vtrace(torch.zeros(3, 2), *[torch.zeros(4, 2)] * 5, 0.99)
