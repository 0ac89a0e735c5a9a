"""Advantages and returns of a rollout: generalised advantage estimation, which is also the
n-step discounted return when lambda is 1 (PPO, A2C, TRPO), and V-trace, its off-policy
correction for rollouts a lagging policy collected (IMPALA).

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


def _check_rollout_shapes(**columns: torch.Tensor) -> None:
    """Every column [T, E] alike, or a ValueError naming each one's shape."""
    shapes = [tensor.shape for tensor in columns.values()]
    if any(shape != shapes[0] for shape in shapes) or len(shapes[0]) != 2:
        named = ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in columns.items())
        raise ValueError(f"expected equal [T, E] shapes, got {named}")


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
    _check_rollout_shapes(rewards=rewards, values=values, next_values=next_values,
                          terminated=terminated, truncated=truncated)
    alive = 1.0 - terminated.to(values.dtype)              # a next state that has a value
    continues = alive * (1.0 - truncated.to(values.dtype))  # the same episode goes on
    deltas = rewards + gamma * alive * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in range(len(rewards) - 1, -1, -1):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


def vtrace(
    log_ratios: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace value targets and policy-gradient advantages (Espeholt et al., 2018), each
    [T, E], for steps a behaviour policy mu took and a target policy pi is learning from;
    ``log_ratios`` = log pi(a_t|x_t) - log mu(a_t|x_t). Boundaries and ``next_values`` as
    in ``advantages_and_returns``:

        rho_t   = min(rho_bar, pi/mu),  c_t = min(c_bar, pi/mu)
        delta_t = rho_t (r_t + gamma (1 - terminated_t) next_value_t - V(x_t))
        v_s     = V(x_s) + delta_s + gamma c_s (1 - terminated_s)(1 - truncated_s)
                  (v_{s+1} - V(x_{s+1}))
        A_s     = rho_s (r_s + gamma (1 - terminated_s) v'_{s+1} - V(x_s))

    where v'_{s+1} is v_{s+1} within the episode and ``next_value_s`` where the rollout
    or a truncation cut it (nothing after it is known). With pi = mu and infinite caps,
    v_s is the n-step return; rho_bar bounds the fixed point's bias towards mu,
    c_bar how far a trace reaches (the variance)."""
    _check_rollout_shapes(log_ratios=log_ratios, rewards=rewards, values=values,
                          next_values=next_values, terminated=terminated, truncated=truncated)
    ratios = log_ratios.exp()
    rhos = ratios.clamp(max=rho_bar)
    cs = ratios.clamp(max=c_bar)
    alive = 1.0 - terminated.to(values.dtype)
    continues = alive * (1.0 - truncated.to(values.dtype))
    deltas = rhos * (rewards + gamma * alive * next_values - values)
    corrections = torch.zeros_like(values)                  # v_s - V(x_s)
    running = torch.zeros_like(values[0])
    for t in range(len(rewards) - 1, -1, -1):
        running = deltas[t] + gamma * cs[t] * continues[t] * running
        corrections[t] = running
    targets = values + corrections
    # v'_{s+1}: the next step's target within the episode, else the bootstrap value
    following = torch.cat([targets[1:], next_values[-1:]])
    following = torch.where(continues.bool(), following, next_values)
    advantages = rhos * (rewards + gamma * alive * following - values)
    return targets, advantages
