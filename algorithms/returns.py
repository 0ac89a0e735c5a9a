"""Advantages and returns of a rollout: generalised advantage estimation, which is also the
n-step discounted return when lambda is 1. PPO and A2C both use this one function.

A rollout is T steps of E envs (time first). Step t of env e saw V(s_t) = ``values[t, e]``,
got ``rewards[t, e]`` and then either went on, ended (``terminated``: the state is
terminal, its value is 0) or was cut off (``truncated``: a time limit; the episode would
have gone on, so the return bootstraps from the value of the observation it was cut at).
``next_values[t, e]`` is the value of the observation after step t: V(s_{t+1}) within an
episode, the value of the final observation at a truncation, anything at a termination
(it is not used), and V(s_T) at the rollout's last step.

    delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - terminated_t) * (1 - truncated_t) * A_{t+1}
    R_t     = A_t + V(s_t)                      (the value target)
"""

from __future__ import annotations

import torch


def advantages_and_returns(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(lambda) advantages and value targets, each [T, E]; lam = 1 gives the discounted
    n-step return (A2C), bootstrapped from the rollout's last next value."""
    if not (rewards.shape == values.shape == next_values.shape == terminated.shape
            == truncated.shape) or rewards.dim() != 2:
        raise ValueError(f"expected equal [T, E] shapes, got rewards {tuple(rewards.shape)}, "
                         f"values {tuple(values.shape)}, next_values "
                         f"{tuple(next_values.shape)}, terminated {tuple(terminated.shape)}, "
                         f"truncated {tuple(truncated.shape)}")
    alive = 1.0 - terminated.to(values.dtype)              # a next state that has a value
    continues = alive * (1.0 - truncated.to(values.dtype))  # the same episode goes on
    deltas = rewards + gamma * alive * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in range(len(rewards) - 1, -1, -1):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values
