"""Soft Actor-Critic for Box actions, in its modern form (Haarnoja et al., 2018, "Soft
Actor-Critic Algorithms and Applications"): twin Q networks with Polyak-averaged targets,
a tanh-squashed Gaussian policy, and a temperature alpha tuned to hold the policy's
entropy near a target.

Read top to bottom, as CleanRL's ``sac_continuous_action.py``: the config, the pieces as
pure functions (Polyak averaging, the temperature loss), the replay table, the policy
actors run and the learner's update. The networks and the squashed Gaussian's log-density
are ``sac_networks.py``'s.
Per update, on a batch of (s, a, r, s', d) transitions (the same fields as DQN's, written
by ``NStepTransitionAdder``: r the discounted n-step reward, d = gamma^n or 0 at a
termination)::

    a' ~ pi(s'),  y = r + d (min_i Q_targ_i(s', a') - alpha log pi(a'|s'))
    q_loss      = sum_i E[(Q_i(s, a) - y)^2]
    policy_loss = E[alpha log pi(a~|s) - min_i Q_i(s, a~)],  a~ ~ pi(s) (reparameterised)
    alpha_loss  = -E[log alpha (log pi(a~|s) + target_entropy)]
    Q_targ_i   <- (1 - tau) Q_targ_i + tau Q_i

One update per env step (samples_per_insert = batch_size) as in the paper; the replay
service's rate limiter holds that ratio whatever the number of actors.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shoal.algorithms.base import (
    Algorithm,
    EnvSpec,
    Experience,
    PolicyStep,
    StepResult,
    TransitionItems,
    Weights,
    load_weights,
)
from shoal.algorithms.base import weights_of as module_weights
from shoal.algorithms.sac_networks import (
    SquashedGaussianActor,
    TwinQ,
    action_size,
    check_spec,
    flat_observations,
)
from shoal.algorithms.transitions import annealed_beta, importance_weights, transition_table
from shoal.protos.tables import FieldSpec, Prioritized, TableSpec, Uniform


@dataclass
class SACConfig:
    """Defaults for Pendulum-v1, after the SAC paper and rl-baselines3-zoo's tuned Pendulum
    SAC (Adam at 1e-3, batch 256, tau 0.005, entropy temperature tuned from 1.0)."""

    learning_rate: float = 1e-3
    """Adam's step size for the policy."""
    q_learning_rate: float = 1e-3
    """Adam's step size for the twin Q networks."""
    alpha_learning_rate: float = 1e-3
    """Adam's step size for log alpha (autotune only)."""
    gamma: float = 0.99
    """Discount per env step."""
    n_step: int = 1
    """Rewards summed before bootstrapping (1: the paper's one-step target)."""
    tau: float = 0.005
    """Polyak coefficient: each update moves the target Q networks this fraction of the
    way to the online ones."""
    batch_size: int = 256
    """Transitions per update."""
    buffer_size: int = 1_000_000
    """Replay table capacity (oldest transitions go first)."""
    min_size_to_sample: int = 1_000
    """Transitions stored before the first update (the rate limiter's), which are also the
    run's env steps of uniformly random actions (shared among the actors) before the policy
    acts: the learner starts on data no untrained policy would choose."""
    samples_per_insert: float = 256.0
    """Sampled transitions per inserted one: one update of batch 256 per env step, as in
    the paper, held by the replay service's rate limiter whatever the number of actors."""
    error_buffer: float = 65_536.0
    """Sampled transitions either side may run ahead of samples_per_insert before the
    rate limiter makes it wait (Reverb's error_buffer): 65,536 is 256 inserted transitions
    at 256 samples per insert. Pendulum is solved in ~10k env steps, so every transition
    the actors run ahead is a noticeable share of the run collected by a stale policy."""
    items_per_message: int = 16
    """Transitions per Insert message; each actor keeps at most eight messages sent but not
    yet stored, so this bounds how far an actor runs ahead of the rate limiter. Before that
    bound, gRPC's flow-control windows let each actor run 4-8k transitions ahead, and
    two actors needed 36 % more env steps than one to reach -200."""
    hidden: tuple[int, ...] = (128, 128)
    """MLP layer widths of the policy and of each Q network. 128 rather than the paper's
    256: an update costs ~10 ms instead of ~16 ms on this machine's CPU (arithmetic-bound
    at batch 256), and Pendulum needs no more."""
    autotune: bool = True
    """Tune alpha by gradient descent on alpha_loss; False keeps it at initial_alpha."""
    initial_alpha: float = 1.0
    """The entropy temperature to start from (autotune), or to keep (the paper's fixed
    temperature runs used 0.2)."""
    target_entropy: float | None = None
    """The entropy autotune aims for; None: -|A|, the number of action dimensions."""
    prioritized: bool = False
    """Proportional prioritized replay (|TD error| priorities, importance weights) instead
    of the uniform sampling of the paper."""
    priority_alpha: float = 0.6
    """Prioritization exponent (prioritized only)."""
    priority_beta: float = 0.4
    """Initial importance-sampling exponent, annealed linearly to 1 (prioritized only)."""
    beta_anneal_updates: int = 20_000
    """Updates over which beta reaches 1 (prioritized only)."""
    priority_epsilon: float = 1e-3
    """Added to |TD error| so no transition's priority is 0 (prioritized only)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau: expected in (0, 1], got {self.tau}")
        if self.n_step < 1:
            raise ValueError(f"n_step: expected >= 1, got {self.n_step}")
        if self.min_size_to_sample < 1:
            raise ValueError(f"min_size_to_sample: expected >= 1, got "
                             f"{self.min_size_to_sample}")
        if not self.initial_alpha > 0.0:
            raise ValueError(f"initial_alpha: expected > 0, got {self.initial_alpha}")


# -------------------------------------------------------------------------- the pieces


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, parameter by parameter, in place: the
    slowly moving targets keep the bootstrapped Q target from chasing its own updates."""
    for target_param, online_param in zip(target.parameters(), online.parameters(),
                                          strict=True):
        target_param.lerp_(online_param, tau)


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor,
                     target_entropy: float) -> torch.Tensor:
    """-E[log alpha (log pi + target_entropy)], in log alpha (as CleanRL and SB3), so alpha
    stays positive and the step is relative. Its gradient is -E[log pi + target_entropy]:
    when the entropy -E[log pi] is below target the gradient is negative and descent
    raises alpha (more weight on entropy); above target it lowers alpha."""
    return -(log_alpha * (log_prob + target_entropy).detach()).mean()


# ------------------------------------------------------------------------ the replay table


def table(config: SACConfig, spec: EnvSpec, num_envs: int = 1) -> TableSpec:
    """DQN's transitions with a float action in env units, one per item whatever the envs;
    sampled uniformly (or by priority), the oldest evicted first at capacity, and the rate
    limiter holding samples per insert."""
    check_spec(spec)
    selector = Prioritized(config.priority_alpha) if config.prioritized else Uniform()
    return transition_table(
        spec, FieldSpec("float32", spec.action_shape), max_size=config.buffer_size,
        selector=selector, samples_per_insert=config.samples_per_insert,
        min_size_to_sample=config.min_size_to_sample, error_buffer=config.error_buffer)


# ------------------------------------------------------------------------------ actors


class SACPolicy:
    """Samples from the squashed Gaussian on the actor's CPU copy of the policy, after
    its share of ``min_size_to_sample`` env steps of uniformly random actions (which fill the
    table with data no untrained policy would choose; shared, so that more actors do not
    mean a longer random phase). Actions are in env units and inside the Box.

    Extras are empty: the learner re-scores actions itself and, prioritized or not, new
    transitions need no priority from the actor (see ``initial_priorities``)."""

    def __init__(self, config: SACConfig, spec: EnvSpec, actor_index: int = 0,
                 num_actors: int = 1, seed: int = 0) -> None:
        check_spec(spec)
        self.config = config
        self.version = 0
        self.env_steps = 0
        self.random_steps = -(-config.min_size_to_sample // max(1, num_actors))  # ceiling
        self.actor = SquashedGaussianActor(spec, config.hidden)
        self._low = np.asarray(spec.action_low, np.float32).reshape(spec.action_shape)
        self._high = np.asarray(spec.action_high, np.float32).reshape(spec.action_shape)
        self._rng = np.random.default_rng(seed)
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def random(self) -> bool:
        """Still in the uniformly random phase."""
        return self.env_steps < self.random_steps

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> PolicyStep:
        """One vector-env step: one action per env, counted as len(obs) env steps."""
        envs = len(obs)
        if self.random:
            actions = self._rng.uniform(self._low, self._high,
                                        size=(envs, *self._low.shape)).astype(np.float32)
        else:
            sampled, _ = self.actor.sample(flat_observations(obs), self._generator)
            actions = sampled.numpy().reshape(envs, *self._low.shape)
        self.env_steps += envs
        return PolicyStep(actions)

    def initial_priorities(self, items: Mapping[str, np.ndarray],
                           extras: Mapping[str, np.ndarray]) -> None:
        """None: the replay table gives new items the largest priority it has seen
        (Schaul et al., 2016), so every transition is sampled soon at least once; no Q
        network lives on the actors to score them."""
        return None

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """scale * tanh(mean) + bias: what ``shoal eval`` plays."""
        actions = self.actor.deterministic(flat_observations(obs)).numpy()
        return actions.reshape(len(obs), *self._low.shape)

    def load(self, weights: Weights, version: int) -> None:
        load_weights(self.actor, weights)
        if self.version == 0 and version > 1:
            self.random_steps = 0  # first weights already trained: no random phase (as DQN)
        self.version = version


# ----------------------------------------------------------------------------- learner


class SACLearner:
    def __init__(self, config: SACConfig, spec: EnvSpec, device: torch.device) -> None:
        check_spec(spec)
        self.config = config
        self.device = device
        self.updates = 0
        self.target_entropy = (float(config.target_entropy) if config.target_entropy is not None
                               else -float(action_size(spec)))
        self.actor = SquashedGaussianActor(spec, config.hidden).to(device)
        self.q = TwinQ(spec, config.hidden).to(device)
        self.q_target = copy.deepcopy(self.q)
        self.q_target.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.initial_alpha), device=device,
                                      requires_grad=True)
        # fused: one kernel for all parameters; per-op overhead, not FLOPs, bounds small nets
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(),
                                                lr=config.learning_rate, fused=True)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=config.q_learning_rate,
                                            fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha],
                                                lr=config.alpha_learning_rate)

    @property
    def beta(self) -> float:
        return annealed_beta(self.config.priority_beta, self.updates,
                             self.config.beta_anneal_updates)

    def step(self, batch: Mapping[str, torch.Tensor], probabilities: torch.Tensor) -> StepResult:
        config = self.config
        obs, next_obs = flat_observations(batch["obs"]), flat_observations(batch["next_obs"])
        action = batch["action"].float().reshape(len(obs), -1)
        alpha = self.log_alpha.detach().exp()

        # --- the twin Q networks, toward the soft bootstrapped target
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
            next_q1, next_q2 = self.q_target(next_obs, next_action)
            soft_value = torch.min(next_q1, next_q2) - alpha * next_log_prob
            targets = batch["reward"].float() + batch["discount"].float() * soft_value
        q1, q2 = self.q(obs, action)
        td1, td2 = q1 - targets, q2 - targets
        if config.prioritized:
            weights = importance_weights(probabilities, self.beta).to(q1.dtype)
            q_loss = (weights * (td1 ** 2 + td2 ** 2)).mean()
        else:
            q_loss = (td1 ** 2).mean() + (td2 ** 2).mean()
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()

        # --- the policy, toward low alpha log pi and high Q (reparameterised). Its
        # backward also fills the Q networks' gradients, which the next zero_grad drops.
        new_action, log_prob = self.actor.sample(obs)
        q1_new, q2_new = self.q(obs, new_action)
        policy_loss = (alpha * log_prob - torch.min(q1_new, q2_new)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.actor_optimizer.step()

        # --- the temperature, toward the target entropy
        alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
        if config.autotune:
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()

        polyak_update(self.q_target, self.q, config.tau)
        self.updates += 1

        priorities = None
        if config.prioritized:  # the twin errors' mean
            td = 0.5 * (td1.detach().abs() + td2.detach().abs())
            priorities = (td.cpu().numpy() + config.priority_epsilon).astype(np.float64)
        return StepResult(
            loss=float(q_loss.detach() + policy_loss.detach()),
            metrics={"q_loss": float(q_loss.detach()),
                     "policy_loss": float(policy_loss.detach()),
                     "alpha": float(alpha), "alpha_loss": float(alpha_loss.detach()),
                     "entropy": float(-log_prob.detach().mean()),
                     "q_mean": float(q1.detach().mean())},
            priorities=priorities)

    def weights(self) -> Weights:
        """The policy only: actors need nothing else."""
        return module_weights(self.actor)

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "q": self.q.state_dict(),
                "q_target": self.q_target.state_dict(), "log_alpha": self.log_alpha.detach(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "q_optimizer": self.q_optimizer.state_dict(),
                "alpha_optimizer": self.alpha_optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        with torch.no_grad():  # in place: alpha_optimizer holds this tensor
            self.log_alpha.copy_(torch.as_tensor(state["log_alpha"]))
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.updates = int(state["updates"])


# ------------------------------------------------------------------------ registration


ALGORITHM = Algorithm(
    name="sac",
    config_type=SACConfig,
    experience=Experience.TRANSITIONS,
    action_spaces=frozenset({"box"}),
    publish_every=5,  # updates (= env steps, at the paper's ratio) per version
    items=lambda config: TransitionItems(config.n_step, config.gamma, config.items_per_message),
    batch_size=lambda config, num_actors: config.batch_size,
    table=table,
    make_policy=SACPolicy,
    make_learner=SACLearner,
)
