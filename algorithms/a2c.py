"""Synchronous advantage actor-critic (A2C; Mnih et al., 2016, synchronous form).

One gradient step per update on everything the actors just collected: advantages are
n-step discounted returns minus values (``returns.py`` with lambda = 1; GAE with a smaller
lambda if asked), the policy gradient -E[log pi(a|s) A], a value loss and an entropy
bonus, RMSprop (or Adam) with a gradient-norm clip. The classic shape is 16 envs x 5 steps
per update (80 env steps); here ``env_steps_per_update`` sets it, and each actor's
rollouts are as long as that over all actors' envs makes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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

OPTIMIZERS = ("rmsprop", "adam")


@dataclass
class A2CConfig(RolloutShape):
    learning_rate: float = 7e-4
    """The optimizer's step size."""
    optimizer: str = "rmsprop"
    """rmsprop (alpha 0.99, eps 1e-5, as in the paper's code) or adam."""
    gamma: float = 0.99
    """Discount per env step."""
    gae_lambda: float = 1.0
    """1: the n-step discounted return of the classic A2C; below 1: GAE."""
    env_steps_per_update: int = 80
    entropy_coef: float = 0.01
    """Weight of the entropy bonus."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    normalize_advantages: bool = False
    """Normalise advantages within each update."""
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the policy and value MLPs (vector observations; frames use the shared
    Nature CNN)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")


class A2CLearner(ActorCriticState):
    def __init__(self, config: A2CConfig, spec: EnvSpec, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.updates = 0
        self.network = ActorCritic(spec, config.hidden).to(device)
        parameters = self.network.parameters()
        self.optimizer: torch.optim.Optimizer = (
            torch.optim.RMSprop(parameters, lr=config.learning_rate, alpha=0.99, eps=1e-5)
            if config.optimizer == "rmsprop"
            else torch.optim.Adam(parameters, lr=config.learning_rate))

    def step(self, batch: Mapping[str, torch.Tensor],
             probabilities: torch.Tensor | None = None) -> StepResult:
        config = self.config
        flat, advantages, returns = flat_rollouts(batch, config.gamma, config.gae_lambda)
        if config.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        obs = network_input(flat["obs"])
        distribution, values = self.network.distribution_and_values(obs)
        actions = flat["action"] if self.network.discrete else flat["action"].float()
        policy_loss = -(distribution.log_prob(actions) * advantages).mean()
        value_loss = 0.5 * ((values - returns) ** 2).mean()
        entropy = distribution.entropy().mean()
        loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        return StepResult(loss=float(loss.detach()), metrics={
            "policy_loss": float(policy_loss.detach()),
            "value_loss": float(value_loss.detach()), "entropy": float(entropy.detach()),
            "grad_norm": float(grad_norm)})

ALGORITHM = rollout_algorithm("a2c", A2CConfig, A2CLearner)
