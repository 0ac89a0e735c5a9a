"""Double DQN with proportional prioritized replay and n-step returns (Ape-X style).

The learner's loop, as in the lecture's "Double DQN with proportional prioritization":
actors store new transitions with a priority (their own TD error, Ape-X) in a table that
samples P(j) = p_j^alpha / sum_k p_k^alpha; the learner corrects the bias with importance
weights w_j = (N P(j))^-beta / max_i w_i, beta annealed to 1; the TD error is taken
against a target network that copies the online one every C updates; and the sampled
items' priorities become |delta|.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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
from shoal.algorithms.networks import network_input, torso_and_head
from shoal.algorithms.transitions import annealed_beta, importance_weights, transition_table
from shoal.protos.tables import FieldSpec, Prioritized, TableSpec


@dataclass
class DQNConfig:
    """Defaults for CartPole-v1, chosen for wall clock on a 2-core machine, where the
    learner is the bottleneck at ~150 updates/s whatever the batch size (torch's per-op
    overhead, not arithmetic): batches of 256 learn from 4x the data per update of 64 at
    the same update rate."""

    learning_rate: float = 3e-3
    """Adam's initial step size."""
    learning_rate_final: float = 5e-4
    """Adam's step size after lr_anneal_updates, reached linearly. A large step learns
    CartPole fast and a small one keeps what it learned: at a constant 2e-3 greedy
    evaluation of the final weights fell below the training returns (218 and 460 against
    490 and 491); at a constant 1e-3 runs took 80k-100k env steps; annealed from 3e-3,
    50k-88k with every evaluation at 500."""
    lr_anneal_updates: int = 8_000
    """Updates over which the step size falls from learning_rate to learning_rate_final."""
    gamma: float = 0.99
    """Discount per env step."""
    n_step: int = 3
    """Rewards summed before bootstrapping from the target network."""
    batch_size: int = 256
    """Transitions per update."""
    buffer_size: int = 100_000
    """Replay table capacity (oldest transitions go first)."""
    min_size_to_sample: int = 500
    """Transitions stored before the first update (the rate limiter's)."""
    samples_per_insert: float = 32.0
    """Sampled transitions per inserted one: the update-to-data ratio, held by the
    replay service's rate limiter whatever the number of actors (32 = one update of
    batch 256 every 8 env steps)."""
    error_buffer: float = 65_536.0
    """Sampled transitions either side may run ahead of samples_per_insert before the
    rate limiter makes it wait (Reverb's error_buffer): 65,536 is 2,048 inserted
    transitions at 32 samples per insert, a few Insert messages' worth, so actors and
    learner do not take turns waiting for each other's next message."""
    items_per_message: int = 256
    """Transitions per Insert message; an actor keeps at most eight messages sent but not
    yet stored by the replay service."""
    target_update_interval: int = 100
    """Updates between copies of the online network into the target network."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip."""
    hidden: tuple[int, ...] = (128, 128)
    """MLP layer widths (vector observations; frames use the Nature CNN)."""
    priority_alpha: float = 0.6
    """Prioritization exponent alpha."""
    priority_beta: float = 0.4
    """Initial importance-sampling exponent beta, annealed linearly to 1."""
    beta_anneal_updates: int = 20_000
    """Updates over which beta reaches 1."""
    priority_epsilon: float = 1e-3
    """Added to |TD error| so no transition's priority is 0."""
    epsilon_base: float = 0.02
    """Ape-X exploration: actor i of N acts randomly with probability
    epsilon_base^(1 + epsilon_exponent * i / (N - 1)) (Ape-X uses 0.4 and 7). The target
    is the mean of *training* episodes, which the most exploring actor plays too: at 0.1
    greedy evaluation reached 500 while training episodes stalled near 470."""
    epsilon_exponent: float = 7.0
    """See epsilon_base."""
    epsilon_decay_steps: int = 24_000
    """Env steps (per actor, over all its envs) over which exploration falls from 1 to its
    final epsilon."""


# ----------------------------------------------------------------------------- networks


def q_network(spec: EnvSpec, config: DQNConfig) -> nn.Module:
    if not spec.discrete or spec.num_actions is None:
        raise ValueError("dqn needs a discrete action space")
    return torso_and_head(spec, config.hidden, spec.num_actions)


# ------------------------------------------------------------------------ the replay table


def table(config: DQNConfig, spec: EnvSpec, num_envs: int = 1) -> TableSpec:
    """Prioritized n-step transitions, one per item whatever the envs; the rate limiter
    holds samples per insert."""
    return transition_table(
        spec, FieldSpec("int64"), max_size=config.buffer_size,
        selector=Prioritized(config.priority_alpha),
        samples_per_insert=config.samples_per_insert,
        min_size_to_sample=config.min_size_to_sample, error_buffer=config.error_buffer)


# ------------------------------------------------------------------------------ actors


def actor_epsilon(config: DQNConfig, actor_index: int, num_actors: int) -> float:
    """Ape-X: eps_i = base^(1 + exponent * i / (N - 1)); one actor explores at base."""
    if num_actors <= 1:
        return config.epsilon_base
    return config.epsilon_base ** (1 + config.epsilon_exponent * actor_index / (num_actors - 1))


def td_priorities(q_taken: np.ndarray, rewards: np.ndarray, discounts: np.ndarray,
                  next_q_max: np.ndarray, epsilon: float) -> np.ndarray:
    """Ape-X initial priorities from the actor's own network: |R + d max_a Q(s', a) - Q(s, a)|."""
    return np.abs(rewards + discounts * next_q_max - q_taken) + epsilon


class DQNPolicy:
    """Epsilon-greedy over the actor's CPU copy of the online network. Extras carry
    Q(s, a) of the action taken, from which ``initial_priorities`` scores the transition
    that starts there (Ape-X)."""

    def __init__(self, config: DQNConfig, spec: EnvSpec, actor_index: int, num_actors: int,
                 seed: int = 0) -> None:
        self.config = config
        self.version = 0
        self.final_epsilon = actor_epsilon(config, actor_index, num_actors)
        self.steps = 0
        self._network = q_network(spec, config)
        self._num_actions = spec.num_actions or 0
        self._rng = np.random.default_rng(seed)

    @property
    def epsilon(self) -> float:
        fraction = min(1.0, self.steps / max(1, self.config.epsilon_decay_steps))
        return 1.0 + fraction * (self.final_epsilon - 1.0)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> PolicyStep:
        q_values = self._network(network_input(obs)).numpy()
        actions = q_values.argmax(axis=1)
        explore = self._rng.random(len(actions)) < self.epsilon
        actions[explore] = self._rng.integers(0, self._num_actions, int(explore.sum()))
        self.steps += len(actions)  # env steps: one per env of the vector step
        return PolicyStep(actions, {"q_taken": q_values[np.arange(len(actions)), actions]})

    @torch.no_grad()
    def initial_priorities(self, items: Mapping[str, np.ndarray],
                           extras: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ape-X: each transition's TD error under this actor's network, computed here so
        the learner never has to score new data."""
        next_q_max = self._network(network_input(items["next_obs"])).max(dim=1).values.numpy()
        return td_priorities(extras["q_taken"], items["reward"], items["discount"],
                             next_q_max, self.config.priority_epsilon)

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return self._network(network_input(obs)).numpy().argmax(axis=1)

    def load(self, weights: Weights, version: int) -> None:
        load_weights(self._network, weights)
        if self.version == 0 and version > 1:
            # This actor's first weights are trained ones (Ray restarted it, it was added to
            # a running run, or the run resumed): epsilon from 1 again would fill the table
            # with random play and flood the training episodes with short ones.
            self.steps = max(self.steps, self.config.epsilon_decay_steps)
        self.version = version


# ----------------------------------------------------------------------------- learner


def double_q_targets(rewards: torch.Tensor, discounts: torch.Tensor,
                     next_q_online: torch.Tensor, next_q_target: torch.Tensor) -> torch.Tensor:
    """y = R + d * Q_target(s', argmax_a Q_online(s', a)): the online net picks, the target
    net evaluates (van Hasselt et al., 2016)."""
    best = next_q_online.argmax(dim=1, keepdim=True)
    return rewards + discounts * next_q_target.gather(1, best).squeeze(1)


class DQNLearner:
    def __init__(self, config: DQNConfig, spec: EnvSpec, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.updates = 0
        self.online = q_network(spec, config).to(device)
        self.target = copy.deepcopy(self.online)
        # fused: one kernel for all parameters; per-op overhead, not FLOPs, bounds small nets
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=config.learning_rate,
                                          fused=True)
        self.schedule = torch.optim.lr_scheduler.LinearLR(
            self.optimizer, start_factor=1.0,
            end_factor=config.learning_rate_final / config.learning_rate,
            total_iters=config.lr_anneal_updates)

    @property
    def beta(self) -> float:
        return annealed_beta(self.config.priority_beta, self.updates,
                             self.config.beta_anneal_updates)

    def step(self, batch: Mapping[str, torch.Tensor], probabilities: torch.Tensor) -> StepResult:
        obs, next_obs = network_input(batch["obs"]), network_input(batch["next_obs"])
        # one online pass over s and s' together: half the calls for the same arithmetic
        q_online = self.online(torch.cat([obs, next_obs]))
        q, next_q_online = q_online[:len(obs)], q_online[len(obs):].detach()
        q_taken = q.gather(1, batch["action"].long().unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            targets = double_q_targets(batch["reward"], batch["discount"],
                                       next_q_online, self.target(next_obs))
        td_error = targets - q_taken
        weights = importance_weights(probabilities, self.beta)
        loss = (weights * F.huber_loss(q_taken, targets, reduction="none")).mean()

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.online.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.schedule.step()
        self.updates += 1
        if self.updates % self.config.target_update_interval == 0:
            self.target.load_state_dict(self.online.state_dict())

        priorities = td_error.detach().abs().cpu().numpy() + self.config.priority_epsilon
        return StepResult(
            loss=float(loss.detach()),
            metrics={"q_mean": float(q_taken.detach().mean()),
                     "grad_norm": float(grad_norm), "beta": self.beta,
                     "learning_rate": self.schedule.get_last_lr()[0]},
            priorities=priorities.astype(np.float64))

    def weights(self) -> Weights:
        return module_weights(self.online)

    def state_dict(self) -> dict[str, Any]:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.updates = int(state["updates"])


# ------------------------------------------------------------------------ registration


ALGORITHM = Algorithm(
    name="dqn",
    config_type=DQNConfig,
    experience=Experience.TRANSITIONS,
    action_spaces=frozenset({"discrete"}),
    publish_every=10,
    items=lambda config: TransitionItems(config.n_step, config.gamma, config.items_per_message),
    batch_size=lambda config, num_actors: config.batch_size,
    table=table,
    make_policy=DQNPolicy,
    make_learner=DQNLearner,
)
