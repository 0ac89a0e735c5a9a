"""Proximal policy optimisation (Schulman et al., 2017) over rollouts from a FIFO table.

Read top to bottom, as CleanRL's ``ppo.py``: the config, the objectives (clipped
surrogate, or a KL penalty with a fixed or adaptive beta), and the learner's update: GAE
over each rollout (``returns.py``), then several epochs of shuffled minibatches with
advantage normalisation, value loss (optionally clipped), entropy bonus, gradient-norm
clip and a linearly annealed step size. The network, the policy actors run and the
rollout table are shared with A2C (``actor_critic.py``).

Synchronous by default: each actor writes one rollout per weight version and waits for
the next version (``actors/collectors.py``); the learner trains on one rollout from every
actor per update and publishes after each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shoal.algorithms.actor_critic import (
    ActorCritic,
    ActorCriticState,
    RolloutShape,
    flat_rollouts,
    rollout_algorithm,
)
from shoal.algorithms.base import EnvSpec, StepResult
from shoal.algorithms.networks import network_input

OBJECTIVES = ("clip", "kl_adaptive", "kl_fixed", "none")


@dataclass
class PPOConfig(RolloutShape):
    """Defaults for CartPole-v1 after rl-baselines3-zoo's tuned PPO (256 env steps per
    update as one minibatch, 20 epochs, gamma 0.98, lambda 0.8, no entropy bonus), where
    CleanRL's Atari-style defaults (128-step rollouts, 4 epochs, lr 2.5e-4) were near 200
    at 150k env steps. Other envs get their preset (``presets/ppo.yaml``)."""

    learning_rate: float = 1e-3
    """Adam's initial step size, annealed linearly to 0 over anneal_updates."""
    anneal_updates: int = 0
    """Updates over which the step size falls to 0 (0: constant)."""
    gamma: float = 0.98
    """Discount per env step."""
    gae_lambda: float = 0.8
    """GAE's lambda: 1 is the discounted return minus the value, 0 the one-step TD
    error."""
    env_steps_per_update: int = 256
    update_epochs: int = 20
    """Passes over each update's rollouts."""
    num_minibatches: int = 1
    """Minibatches per pass, of B*T*E / num_minibatches steps each."""
    objective: str = "clip"
    """clip | kl_adaptive | kl_fixed | none (the plain policy gradient with ratio)."""
    clip_coef: float = 0.2
    """epsilon of the clipped surrogate (clip), and of the value clip."""
    kl_beta: float = 1.0
    """Initial KL penalty coefficient (kl_* objectives)."""
    kl_target: float = 0.01
    """kl_adaptive: beta halves when KL < target / 1.5 and doubles when KL > 1.5 target."""
    clip_value_loss: bool = True
    """Clip the value update around the behaviour values, as baselines' PPO2 does."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    normalize_advantages: bool = True
    """Normalise advantages within each minibatch."""
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the policy and value MLPs (vector observations; frames use the shared
    Nature CNN)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {list(OBJECTIVES)}, "
                             f"got {self.objective!r}")


# --------------------------------------------------------------------------- objectives


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor,
                      clip: float) -> torch.Tensor:
    """-E[min(r A, clip(r, 1-eps, 1+eps) A)]: the loss to minimise."""
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    return -torch.min(unclipped, clipped).mean()


def kl_penalty_loss(ratio: torch.Tensor, advantages: torch.Tensor, kl: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """-E[r A] + beta KL(old || new)."""
    return -(ratio * advantages).mean() + beta * kl


def adapt_kl_beta(beta: float, kl: float, target: float) -> float:
    """The adaptive-KL rule of the PPO paper: halve beta when the update moved the policy
    less than target / 1.5, double it when more than 1.5 target."""
    if kl < target / 1.5:
        return beta / 2.0
    if kl > target * 1.5:
        return beta * 2.0
    return beta


def approximate_kl(old_log_prob: torch.Tensor, new_log_prob: torch.Tensor) -> torch.Tensor:
    """E[(r - 1) - log r], an unbiased, non-negative estimate of KL(old || new)."""
    log_ratio = new_log_prob - old_log_prob
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()


# ----------------------------------------------------------------------------- learner


class PPOLearner(ActorCriticState):
    def __init__(self, config: PPOConfig, spec: EnvSpec, device: torch.device,
                 seed: int = 0) -> None:
        self.config = config
        self.device = device
        self.updates = 0
        self.kl_beta = config.kl_beta
        self.network = ActorCritic(spec, config.hidden).to(device)
        # foreach: one kernel per op across all parameters; the default on CUDA, and on a
        # CPU it halves the optimizer's per-minibatch overhead for these small networks.
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.learning_rate,
                                          eps=1e-5, foreach=True)
        self._generator = torch.Generator().manual_seed(seed)

    def _anneal(self) -> float:
        if not self.config.anneal_updates:
            return self.config.learning_rate
        left = max(0.0, 1.0 - self.updates / self.config.anneal_updates)
        rate = self.config.learning_rate * left
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        return rate

    def step(self, batch: Mapping[str, torch.Tensor],
             probabilities: torch.Tensor | None = None) -> StepResult:
        """One update from a batch of B rollouts, each [T, E, ...]: GAE per rollout, then
        ``update_epochs`` passes over shuffled minibatches of all B*T*E steps."""
        config = self.config
        flat, flat_advantages, flat_returns = flat_rollouts(batch, config.gamma,
                                                            config.gae_lambda)
        size = len(flat_advantages)
        minibatch = max(1, size // config.num_minibatches)
        learning_rate = self._anneal()
        metrics: dict[str, list[torch.Tensor]] = {  # read once per update, not per minibatch
            "policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [],
            "clip_fraction": []}
        for _ in range(config.update_epochs):
            order = torch.randperm(size, generator=self._generator).to(self.device)
            for start in range(0, size, minibatch):
                index = order[start:start + minibatch]
                self._minibatch(flat, flat_advantages[index], flat_returns[index], index,
                                metrics)
        summary = {name: float(torch.stack(values).mean()) for name, values in metrics.items()}
        if config.objective == "kl_adaptive":
            self.kl_beta = adapt_kl_beta(self.kl_beta, summary["approx_kl"], config.kl_target)
        self.updates += 1
        summary.update(kl_beta=self.kl_beta, learning_rate=learning_rate)
        return StepResult(
            loss=summary["policy_loss"] + config.value_coef * summary["value_loss"],
            metrics=summary)

    def _minibatch(self, flat: Mapping[str, torch.Tensor], advantages: torch.Tensor,
                   returns: torch.Tensor, index: torch.Tensor,
                   metrics: dict[str, list[torch.Tensor]]) -> None:
        config = self.config
        obs = network_input(flat["obs"][index])
        distribution, values = self.network.distribution_and_values(obs)
        actions = flat["action"][index]
        new_log_prob = distribution.log_prob(actions if self.network.discrete
                                             else actions.float())
        old_log_prob = flat["log_prob"][index].float()
        ratio = (new_log_prob - old_log_prob).exp()
        if config.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        kl = approximate_kl(old_log_prob, new_log_prob)
        if config.objective == "clip":
            policy_loss = clipped_surrogate(ratio, advantages, config.clip_coef)
        elif config.objective in ("kl_adaptive", "kl_fixed"):
            policy_loss = kl_penalty_loss(ratio, advantages, kl, self.kl_beta)
        else:
            policy_loss = -(ratio * advantages).mean()

        if config.clip_value_loss:
            old_values = flat["value"][index].float()
            clipped = old_values + (values - old_values).clamp(-config.clip_coef,
                                                               config.clip_coef)
            value_loss = 0.5 * torch.max((values - returns) ** 2,
                                         (clipped - returns) ** 2).mean()
        else:
            value_loss = 0.5 * ((values - returns) ** 2).mean()
        entropy = distribution.entropy().mean()
        loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.network.parameters(), config.max_grad_norm,
                                 foreach=True)
        self.optimizer.step()
        metrics["policy_loss"].append(policy_loss.detach())
        metrics["value_loss"].append(value_loss.detach())
        metrics["entropy"].append(entropy.detach())
        metrics["approx_kl"].append(kl.detach())
        metrics["clip_fraction"].append(
            ((ratio.detach() - 1.0).abs() > config.clip_coef).float().mean())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "kl_beta": self.kl_beta}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.kl_beta = float(state["kl_beta"])


# ------------------------------------------------------------------------ registration


ALGORITHM = rollout_algorithm("ppo", PPOConfig, PPOLearner)
