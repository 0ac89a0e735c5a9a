"""Importance-weighted actor-learner (IMPALA; Espeholt et al., 2018): an actor-critic that
trains on every rollout the actors send, however old the policy that collected it.

Read top to bottom. The actors never wait for weights (``RolloutItems(paced=False)``):
each keeps stepping with whatever version it last received and writes its rollouts to a
FIFO queue, and the learner takes one rollout per actor from it per update. The policy
that collected a rollout (mu, its log-probs carried in the item) is then some versions
behind the one being trained (pi); V-trace (``returns.py``) corrects for that with
truncated importance weights: value targets v_s for the critic, and advantages
rho_s (r_s + gamma v_{s+1} - V(x_s)) for the policy gradient, plus an entropy bonus.
Where PPO and A2C would have to drop a stale rollout or wait for a fresh one, IMPALA uses
it. With ``clip_coef`` set it is APPO instead: PPO's clipped surrogate over the V-trace
advantages, for several epochs.

V is the learner's current critic at every observation the rollout holds. A rollout does
not hold the observation after its last step, nor the final observation where a time
limit cut an episode, so there the bootstrap is the value the actor's policy gave it
(``next_value``): one value in T per env, as old as the rollout.

The network, the policy actors run and the rollout table are the other rollout
algorithms' (``actor_critic.py``).
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
    rollout_algorithm,
    rollout_length,
    rollout_table,
    time_first,
)
from shoal.algorithms.base import EnvSpec, RolloutItems, StepResult
from shoal.algorithms.networks import network_input
from shoal.algorithms.ppo import clipped_surrogate
from shoal.algorithms.returns import vtrace
from shoal.protos.tables import TableSpec

OPTIMIZERS = ("adam", "rmsprop")


@dataclass
class ImpalaConfig(RolloutShape):
    """Defaults for CartPole-v1 (2 actors x 8 envs)."""

    learning_rate: float = 3e-3
    """The optimizer's step size."""
    optimizer: str = "adam"
    """adam, or rmsprop (alpha 0.99, eps 0.01, as in the paper)."""
    gamma: float = 0.99
    """Discount per env step."""
    rho_bar: float = 1.0
    """rho-bar: the cap on the importance weights of the TD errors and of the policy
    gradient. It sets what the value targets converge to: V of pi at infinity, of a
    policy between mu and pi below."""
    c_bar: float = 1.0
    """c-bar: the cap on the trace's importance weights, which bounds the targets'
    variance (how far back a TD error reaches) without moving their fixed point."""
    env_steps_per_update: int = 256
    update_epochs: int = 1
    """Passes over each update's rollouts (the paper: 1); V-trace is recomputed with
    the current policy for every minibatch."""
    num_minibatches: int = 1
    """Minibatches per pass, each a share of the update's env columns (whole T-step
    rollouts, as the V-trace recursion needs)."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    normalize_advantages: bool = False
    """Normalise the policy-gradient advantages within each minibatch."""
    clip_coef: float | None = None
    """None: IMPALA's policy gradient, rho_s log pi(a|x) A_s. epsilon: APPO's (Sample
    Factory's asynchronous PPO): PPO's clipped surrogate min(r A, clip(r, 1 - eps,
    1 + eps) A) with r = pi/mu, the ratio to the behaviour policy, over the V-trace
    advantage r_s + gamma v_{s+1} - V(x_s) (the ratio weighs it, so rho does not); with
    several ``update_epochs`` it keeps PPO's sample efficiency."""
    max_queued_rollouts: int = 16
    """Size of the FIFO queue between actors and learner, at least the actor count (one
    update's rollouts). When the learner falls behind, the actors wait for room here (the
    only wait they have), and the policy lag of what it trains on grows to about this
    over the actor count (plus the batches the learner prefetches): a bigger queue keeps
    actors busier, a smaller one their data fresher."""
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the policy and value MLPs (vector observations; frames use the shared
    Nature CNN)."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if self.clip_coef is not None and not self.clip_coef > 0:
            raise ValueError(f"clip_coef: expected > 0 or None, got {self.clip_coef}")
        for name in ("rho_bar", "c_bar"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")
        super().__post_init__()
        for name in ("update_epochs", "num_minibatches",
                     "max_queued_rollouts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")


# ----------------------------------------------------------------------------- learner


class ImpalaLearner(ActorCriticState):
    def __init__(self, config: ImpalaConfig, spec: EnvSpec, device: torch.device,
                 seed: int = 0) -> None:
        self.config = config
        self.device = device
        self.updates = 0
        self.network = ActorCritic(spec, config.hidden).to(device)
        parameters = self.network.parameters()
        self.optimizer: torch.optim.Optimizer = (
            torch.optim.Adam(parameters, lr=config.learning_rate, eps=1e-5, foreach=True)
            if config.optimizer == "adam"
            else torch.optim.RMSprop(parameters, lr=config.learning_rate, alpha=0.99,
                                     eps=0.01, foreach=True))
        self._generator = torch.Generator().manual_seed(seed)

    def step(self, batch: Mapping[str, torch.Tensor],
             probabilities: torch.Tensor | None = None) -> StepResult:
        """One update from B rollouts of [T, E, ...]: ``update_epochs`` passes, each over
        minibatches of whole env columns, V-trace under the current policy in each."""
        rollout = time_first(batch)                          # [T, B*E, ...]
        columns = rollout["reward"].shape[1]
        per_minibatch = max(1, columns // self.config.num_minibatches)
        metrics: dict[str, list[torch.Tensor]] = {
            "policy_loss": [], "value_loss": [], "entropy": [], "mean_ratio": [],
            "clipped_rho_fraction": [], "grad_norm": []}
        for _ in range(self.config.update_epochs):
            order = torch.randperm(columns, generator=self._generator).to(self.device)
            for start in range(0, columns, per_minibatch):
                index = order[start:start + per_minibatch]
                self._minibatch({name: column[:, index] for name, column in rollout.items()},
                                metrics)
        self.updates += 1
        summary = {name: float(torch.stack(values).mean()) for name, values in metrics.items()}
        return StepResult(
            loss=summary["policy_loss"] + self.config.value_coef * summary["value_loss"],
            metrics=summary)

    def _minibatch(self, rollout: Mapping[str, torch.Tensor],
                   metrics: dict[str, list[torch.Tensor]]) -> None:
        config = self.config
        steps, columns = rollout["reward"].shape
        obs = network_input(rollout["obs"])
        distribution, values = self.network.distribution_and_values(
            obs.reshape(steps * columns, *obs.shape[2:]))
        actions = rollout["action"].reshape(steps * columns, *rollout["action"].shape[2:])
        log_prob = distribution.log_prob(
            actions if self.network.discrete else actions.float()).reshape(steps, columns)
        values = values.reshape(steps, columns)
        behaviour_log_prob = rollout["log_prob"].float()
        terminated, truncated = rollout["terminated"], rollout["truncated"]
        with torch.no_grad():
            current = values.detach()
            # V of the next observation: the critic's own where the rollout holds it,
            # the actor's where it does not (after the last step, at a truncation)
            held = torch.cat([current[1:], current[-1:]])
            inside = ~(terminated | truncated)
            inside[-1] = False
            next_values = torch.where(inside, held, rollout["next_value"].float())
            log_ratios = log_prob.detach() - behaviour_log_prob
            targets, advantages = vtrace(
                log_ratios, rollout["reward"].float(), current, next_values, terminated,
                truncated, config.gamma, config.rho_bar, config.c_bar)
            ratios = log_ratios.exp()
            if config.clip_coef is not None:  # the surrogate's ratio is the weight
                advantages = advantages / ratios.clamp(max=config.rho_bar)
            if config.normalize_advantages and advantages.numel() > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        if config.clip_coef is None:
            policy_loss = -(log_prob * advantages).mean()
        else:
            policy_loss = clipped_surrogate((log_prob - behaviour_log_prob).exp(), advantages,
                                            config.clip_coef)
        value_loss = 0.5 * ((values - targets) ** 2).mean()
        entropy = distribution.entropy().mean()
        loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), config.max_grad_norm,
                                             foreach=True)
        self.optimizer.step()
        metrics["policy_loss"].append(policy_loss.detach())
        metrics["value_loss"].append(value_loss.detach())
        metrics["entropy"].append(entropy.detach())
        metrics["mean_ratio"].append(ratios.mean())
        metrics["clipped_rho_fraction"].append((ratios > config.rho_bar).float().mean())
        metrics["grad_norm"].append(grad_norm.detach())

# ------------------------------------------------------------------------ registration


def unpaced_rollouts(config: ImpalaConfig) -> RolloutItems:
    """Rollouts whose actors never wait for the learner's weights."""
    return RolloutItems(rollout_length(config), paced=False)


def queue(config: ImpalaConfig, spec: EnvSpec, num_envs: int) -> TableSpec:
    return rollout_table(config, spec, num_envs, config.max_queued_rollouts)


ALGORITHM = rollout_algorithm("impala", ImpalaConfig, ImpalaLearner,
                              items=unpaced_rollouts, table=queue)
