"""Trust region policy optimisation (Schulman et al., 2015) over rollouts from a FIFO table.

Read top to bottom, as the lectures derive it. The policy maximises the surrogate
advantage under importance sampling, L(θ) = E[π_θ(a|s) / μ(a|s) · A], subject to the
trust region E[KL(π_old ‖ π_θ)] ≤ δ. To second order the constraint is ½ sᵀFs ≤ δ with F
the Fisher information matrix (the Hessian of the mean KL at θ_old), so the best step is
the natural gradient s = F⁻¹g scaled to the region's edge, √(2δ / gᵀF⁻¹g) · F⁻¹g.
Conjugate gradient finds F⁻¹g from Fisher-vector products alone (double backprop of the
mean KL), so F is never formed; a backtracking line search then accepts the longest
fraction of the step whose measured KL is within δ and whose surrogate improves, and
otherwise leaves the policy as it was (counted). The value function is fitted apart, by
regression on the GAE returns (``returns.py``) with a few Adam epochs per update.

The network, the policy actors run and the rollout table are PPO's and A2C's
(``actor_critic.py``): one new file, one registry line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import kl_divergence

from shoal.algorithms.actor_critic import (
    ActorCritic,
    ActorCriticPolicy,
    RolloutShape,
    flat_rollouts,
    rollout_algorithm,
)
from shoal.algorithms.base import EnvSpec, StepResult, Weights
from shoal.algorithms.base import weights_of as module_weights
from shoal.algorithms.networks import is_image, network_input


@dataclass
class TRPOConfig(RolloutShape):
    """Defaults for CartPole-v1 after rl-baselines3-zoo's tuned TRPO (sb3-contrib):
    δ = 0.01, GAE lambda 0.98, 20 critic steps per update at 1e-3, 512 env steps per
    update (2 actors x 8 envs x 32 steps)."""

    max_kl: float = 0.01
    """δ: the trust region, a bound on the mean KL(π_old ‖ π_θ) of an update."""
    cg_iterations: int = 10
    """Conjugate-gradient iterations for F⁻¹g."""
    cg_damping: float = 0.1
    """Added to the Fisher-vector product (F + λI)v, which keeps CG stable where the
    sampled F is nearly singular."""
    line_search_steps: int = 10
    """Fractions of the full step tried, each backtrack_ratio times the last."""
    backtrack_ratio: float = 0.8
    """How much shorter each line-search fraction is than the one before."""
    value_learning_rate: float = 1e-3
    """Adam's step size for the value function."""
    value_epochs: int = 20
    """Passes of value regression over each update's steps."""
    value_minibatches: int = 4
    """Minibatches per value pass."""
    gamma: float = 0.99
    """Discount per env step."""
    gae_lambda: float = 0.98
    """GAE's lambda for the advantages and the value targets."""
    env_steps_per_update: int = 512
    normalize_advantages: bool = True
    """Normalise the advantages of each update (the surrogate's scale, not its direction)."""
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the policy and value MLPs (vector observations only)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.max_kl > 0:
            raise ValueError(f"max_kl: expected > 0, got {self.max_kl}")
        if not 0.0 < self.backtrack_ratio < 1.0:
            raise ValueError(f"backtrack_ratio: expected in (0, 1), got {self.backtrack_ratio}")
        for name in ("cg_iterations", "line_search_steps", "value_epochs", "value_minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")


# ------------------------------------------------------------------------- the pieces


def flat_grad(output: torch.Tensor, parameters: Sequence[torch.Tensor],
              create_graph: bool = False) -> torch.Tensor:
    """∂output/∂parameters as one vector (parameters the output does not use: zeros)."""
    grads = torch.autograd.grad(output, parameters, create_graph=create_graph,
                                allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, parameters, strict=True)])


def fisher_vector_product(mean_kl: Callable[[], torch.Tensor],
                          parameters: Sequence[torch.Tensor], vector: torch.Tensor,
                          damping: float) -> torch.Tensor:
    """(F + damping I) v with F the Hessian of the mean KL at the current parameters, by
    double backprop: ∇(∇KL · v). The KL's gradient is zero where π_θ = π_old, so the
    product is exactly the Hessian's."""
    grad = flat_grad(mean_kl(), parameters, create_graph=True)
    return flat_grad(grad @ vector, parameters) + damping * vector


def conjugate_gradient(matrix_vector: Callable[[torch.Tensor], torch.Tensor],
                       b: torch.Tensor, iterations: int, tolerance: float = 1e-10,
                       ) -> torch.Tensor:
    """x ≈ A⁻¹b for a symmetric positive definite A known only by its products A·v."""
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    squared = residual @ residual
    for _ in range(iterations):
        product = matrix_vector(direction)
        alpha = squared / (direction @ product)
        x = x + alpha * direction
        residual = residual - alpha * product
        new_squared = residual @ residual
        if new_squared < tolerance:
            break
        direction = residual + (new_squared / squared) * direction
        squared = new_squared
    return x


def get_flat(parameters: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in parameters])


@torch.no_grad()
def set_flat(parameters: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    start = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.copy_(flat[start:start + size].view_as(parameter))
        start += size


@torch.no_grad()
def line_search(parameters: Sequence[torch.Tensor], full_step: torch.Tensor,
                evaluate: Callable[[], tuple[float, float]], max_kl: float,
                steps: int, backtrack_ratio: float) -> float | None:
    """Tries θ + f · full_step for f = 1, r, r², ... and keeps the first whose surrogate
    beats the current one and whose measured mean KL is within ``max_kl``; ``evaluate()``
    gives (surrogate, KL) at the parameters as they are. Returns the fraction taken, or
    None, with the parameters as they were: no step is better than a step out of the
    trust region."""
    start = get_flat(parameters)
    baseline, _ = evaluate()
    fraction = 1.0
    for _ in range(steps):
        set_flat(parameters, start + fraction * full_step)
        surrogate, kl = evaluate()
        if math.isfinite(surrogate) and surrogate > baseline and kl <= max_kl:
            return fraction
        fraction *= backtrack_ratio
    set_flat(parameters, start)
    return None


# ----------------------------------------------------------------------------- learner


def check_vector_spec(spec: EnvSpec) -> None:
    """TRPO as written here: separate policy and value MLPs, so vector observations only."""
    if is_image(spec):
        raise ValueError(f"trpo takes vector observations; spec.observation_shape = "
                         f"{spec.observation_shape} ({spec.observation_dtype}) are frames")


class TRPOLearner:
    def __init__(self, config: TRPOConfig, spec: EnvSpec, device: torch.device) -> None:
        check_vector_spec(spec)
        self.config = config
        self.device = device
        self.updates = 0
        self.rejected = 0  # updates whose line search found no acceptable step
        self.network = ActorCritic(spec, config.hidden).to(device)
        self.policy_parameters = [*self.network.policy.parameters(),
                                  *([] if self.network.discrete else [self.network.log_std])]
        self.value_optimizer = torch.optim.Adam(self.network.value.parameters(),
                                                lr=config.value_learning_rate)
        self._generator = torch.Generator().manual_seed(0)

    def step(self, batch: Mapping[str, torch.Tensor],
             probabilities: torch.Tensor | None = None) -> StepResult:
        """One update from a batch of B rollouts, each [T, E, ...]: GAE per rollout, a
        natural-gradient step of the policy within the trust region, then the value fit."""
        config = self.config
        flat, advantages, returns = flat_rollouts(batch, config.gamma, config.gae_lambda)
        if config.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        obs = network_input(flat["obs"])
        actions = flat["action"] if self.network.discrete else flat["action"].float()
        behaviour_log_prob = flat["log_prob"].float()
        with torch.no_grad():
            old = self.network.distribution(obs)  # π_old: the policy before this update

        def surrogate() -> torch.Tensor:
            log_prob = self.network.distribution(obs).log_prob(actions)
            return ((log_prob - behaviour_log_prob).exp() * advantages).mean()

        def mean_kl() -> torch.Tensor:
            return kl_divergence(old, self.network.distribution(obs)).mean()

        def evaluate() -> tuple[float, float]:
            with torch.no_grad():
                return float(surrogate()), float(mean_kl())

        parameters = self.policy_parameters
        gradient = flat_grad(surrogate(), parameters)
        direction = conjugate_gradient(
            lambda v: fisher_vector_product(mean_kl, parameters, v, config.cg_damping),
            gradient, config.cg_iterations)
        curvature = direction @ fisher_vector_product(mean_kl, parameters, direction,
                                                      config.cg_damping)
        fraction = None
        if curvature > 0 and torch.isfinite(curvature):
            full_step = torch.sqrt(2 * config.max_kl / curvature) * direction
            fraction = line_search(parameters, full_step, evaluate, config.max_kl,
                                   config.line_search_steps, config.backtrack_ratio)
        if fraction is None:
            self.rejected += 1
        surrogate_after, kl_after = evaluate()

        value_loss = self._fit_values(obs, returns)
        self.updates += 1
        with torch.no_grad():
            entropy = float(self.network.distribution(obs).entropy().mean())
        return StepResult(loss=-surrogate_after + 0.5 * value_loss, metrics={
            "policy_loss": -surrogate_after, "value_loss": value_loss, "kl": kl_after,
            "step_fraction": 0.0 if fraction is None else fraction,
            "rejected_updates": float(self.rejected), "entropy": entropy})

    def _fit_values(self, obs: torch.Tensor, returns: torch.Tensor) -> float:
        config = self.config
        size = len(returns)
        minibatch = max(1, size // config.value_minibatches)
        losses = []
        for _ in range(config.value_epochs):
            order = torch.randperm(size, generator=self._generator).to(self.device)
            for start in range(0, size, minibatch):
                index = order[start:start + minibatch]
                loss = 0.5 * ((self.network.values(obs[index]) - returns[index]) ** 2).mean()
                self.value_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.value_optimizer.step()
                losses.append(loss.detach())
        return float(torch.stack(losses[-config.value_minibatches:]).mean())

    def weights(self) -> Weights:
        return module_weights(self.network)

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.network.state_dict(),
                "value_optimizer": self.value_optimizer.state_dict(),
                "updates": self.updates, "rejected": self.rejected}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.updates = int(state["updates"])
        self.rejected = int(state["rejected"])


def make_policy(config: TRPOConfig, spec: EnvSpec, actor_index: int, num_actors: int,
                       seed: int = 0) -> ActorCriticPolicy:
    """Actors play the actor-critic policy; frames are refused here as in the learner."""
    check_vector_spec(spec)
    return ActorCriticPolicy.of_config(config, spec, actor_index, num_actors, seed)


# ------------------------------------------------------------------------ registration


ALGORITHM = rollout_algorithm("trpo", TRPOConfig, TRPOLearner, make_policy)
