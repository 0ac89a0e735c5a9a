"""What the rollout algorithms (PPO, A2C, TRPO, IMPALA) share: the actor-critic network,
the policy actors run with it, the rollout table, and turning a batch of rollouts into
time-first columns with advantages and value targets."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from shoal.algorithms.base import (
    Algorithm,
    EnvSpec,
    Experience,
    LearnerFactory,
    PolicyFactory,
    PolicyStep,
    RolloutItems,
    TableFactory,
    Weights,
    load_weights,
    weights_of,
)
from shoal.algorithms.networks import (
    NatureTorso,
    is_image,
    network_input,
    orthogonal_init,
    torso_and_head,
)
from shoal.algorithms.returns import advantages_and_returns
from shoal.protos.tables import FieldSpec, TableSpec


class ActorCritic(nn.Module):
    """A categorical policy for discrete actions, a diagonal Gaussian with a
    state-independent log standard deviation for Box actions, and a value.

    Vector observations: separate tanh MLPs of ``hidden`` for policy and value, as in the
    reference PPO/A2C for classic control. Frame stacks: one Nature CNN torso (ReLU) shared
    by a linear policy head and a linear value head, as in the Atari PPO/A2C of baselines,
    SB3 and CleanRL; ``hidden`` is not used. The convolutions are most of the cost on a
    CPU, and sharing them halves it on the actor and the learner alike."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.discrete = spec.discrete
        outputs = spec.num_actions if spec.num_actions is not None else int(
            np.prod(spec.action_shape))
        # orthogonal init, policy head of gain 0.01, as in the reference PPO/A2C
        # (see ``orthogonal_init``); vectors also take tanh
        self.torso: NatureTorso | None = None
        if is_image(spec):
            self.torso = orthogonal_init(NatureTorso(), 2 ** 0.5)
            self.policy: nn.Module = orthogonal_init(
                nn.Linear(self.torso.features, outputs), 0.01)
            self.value: nn.Module = orthogonal_init(nn.Linear(self.torso.features, 1), 1.0)
        else:
            self.policy = orthogonal_init(torso_and_head(spec, hidden, outputs, nn.Tanh), 0.01)
            self.value = orthogonal_init(torso_and_head(spec, hidden, 1, nn.Tanh), 1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(outputs))

    def _heads_input(self, obs: torch.Tensor) -> torch.Tensor:
        """What the heads read: the shared torso's features for frames, else obs itself."""
        return obs if self.torso is None else self.torso(obs)

    def _distribution(self, out: torch.Tensor) -> Distribution:
        # validate_args=False: the argument checks cost more than the math at these sizes
        # (a fifth of a PPO minibatch), and the inputs are ours.
        if self.discrete:
            return Categorical(logits=out, validate_args=False)
        return Independent(Normal(out, self.log_std.exp(), validate_args=False), 1,
                           validate_args=False)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        return self._distribution(self.policy(self._heads_input(obs)))

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(self._heads_input(obs)).squeeze(-1)

    def distribution_and_values(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """Both heads with one torso pass: what acting and every update need."""
        inputs = self._heads_input(obs)
        return self._distribution(self.policy(inputs)), self.value(inputs).squeeze(-1)


FRAME_COMPRESSION = "zstd"
"""How a rollout's frames travel and are stored: one zstd frame per rollout item. An item's
frames are laid out [T, E, 4, 84, 84], so an env's next frame stack (3 of its 4 frames
the same) is E x 28 KB further on: beyond lz4's 64 KB window from 3 envs up. On real Pong
rollouts (64 steps x 4 envs) zstd stored 100 B per env step against lz4's 419 (281x vs
67x raw), compressing at 3.3 GB/s and decompressing at 4.5 GB/s (lz4: 6.8 and 1.0)."""


@dataclass
class RolloutShape:
    """How much an update of a rollout algorithm trains on, as one setting whatever the
    actor count: with the update's size in env steps fixed, adding actors makes each
    actor's rollouts shorter, not the update bigger, so the policy moves as often per env
    step with 1 actor as with 8 (SB3's n_steps x n_envs, RLlib's train_batch_size)."""

    env_steps_per_update: int = 256
    """Env steps each update trains on, whatever the actor count: the rollout length T
    follows as this / (actors x envs per actor), rounded to the nearest whole step (half
    up, at least 1). When it does not divide, the update is T x actors x envs steps, which the
    run prints at its start."""
    rollout_length: int | None = None
    """T: env steps per rollout item (each item holds all of an actor's envs). None:
    derived from env_steps_per_update when the run is resolved. Given (in --config or a
    flag), it wins over an env_steps_per_update from a preset or the defaults, which then
    becomes T x actors x envs."""

    def __post_init__(self) -> None:
        if self.env_steps_per_update < 1:
            raise ValueError(f"env_steps_per_update: expected >= 1, "
                             f"got {self.env_steps_per_update}")
        if self.rollout_length is not None and self.rollout_length < 1:
            raise ValueError(f"rollout_length: expected >= 1, got {self.rollout_length}")


RolloutShapeT = TypeVar("RolloutShapeT", bound=RolloutShape)


def shape_rollouts(config: RolloutShapeT, num_envs: int) -> RolloutShapeT:
    """``config`` with its rollout length for ``num_envs`` envs over all actors: the
    ``Algorithm.shape`` of the rollout algorithms. A rollout length already set must be
    the one env_steps_per_update makes (a config printed by ``--print-config`` is)."""
    length = max(1, math.floor(config.env_steps_per_update / num_envs + 0.5))
    if config.rollout_length is None:
        return dataclasses.replace(config, rollout_length=length)
    if config.rollout_length != length:
        raise ValueError(
            f"rollout_length: {config.rollout_length} steps x {num_envs} envs make "
            f"{config.rollout_length * num_envs} env steps per update, not "
            f"env_steps_per_update {config.env_steps_per_update}; give one of the two")
    return config


def rollout_length(config: RolloutShape) -> int:
    if config.rollout_length is None:
        raise ValueError("rollout_length: not derived yet; Algorithm.shape derives it from "
                         "env_steps_per_update and the envs of all actors")
    return config.rollout_length


class RolloutConfig(Protocol):
    """What the actors' policy reads of the rollout algorithms' configs."""

    hidden: tuple[int, ...]


def rollout_items(config: RolloutShape) -> RolloutItems:
    return RolloutItems(rollout_length(config))


def rollout_table(config: RolloutShape, spec: EnvSpec, num_envs: int,
                  max_rollouts: int = 64) -> TableSpec:
    """A FIFO queue of rollouts, each [T, E, ...], sampled once."""
    steps = (rollout_length(config), num_envs)
    obs = FieldSpec(spec.observation_dtype, (*steps, *spec.observation_shape),
                    FRAME_COMPRESSION if is_image(spec) else "none")
    action = (FieldSpec("int64", steps) if spec.discrete
              else FieldSpec("float32", (*steps, *spec.action_shape)))
    scalar = FieldSpec("float32", steps)
    return TableSpec.queue("rollouts", max_rollouts, {
        "obs": obs, "action": action, "reward": scalar,
        "terminated": FieldSpec("bool", steps), "truncated": FieldSpec("bool", steps),
        "log_prob": scalar, "value": scalar, "next_value": scalar,
        "version": FieldSpec("int64", steps),
    })


class ActorCriticPolicy:
    """Samples from the current policy on the CPU; extras carry the behaviour log-prob and
    the value estimate the learner's GAE needs."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...], seed: int = 0) -> None:
        self.version = 0
        self.network = ActorCritic(spec, hidden)
        self._generator = torch.Generator().manual_seed(seed)

    @classmethod
    def of_config(cls, config: RolloutConfig, spec: EnvSpec, actor_index: int,
                  num_actors: int, seed: int = 0) -> ActorCriticPolicy:
        """The registry's policy factory: every actor samples alike (seeded apart)."""
        return cls(spec, config.hidden, seed)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> PolicyStep:
        distribution, values = self.network.distribution_and_values(network_input(obs))
        if self.network.discrete:
            probs = distribution.probs  # type: ignore[attr-defined]
            actions = torch.multinomial(probs, 1, generator=self._generator).squeeze(1)
        else:
            base = distribution.base_dist  # type: ignore[attr-defined]
            noise = torch.randn(base.loc.shape, generator=self._generator)
            actions = base.loc + base.scale * noise
        return PolicyStep(actions.numpy(), {
            "log_prob": distribution.log_prob(actions).numpy(),
            "value": values.numpy()})

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The most likely action (the mean, for Box actions): what ``shoal eval`` plays."""
        distribution = self.network.distribution(network_input(obs))
        if self.network.discrete:
            return distribution.probs.argmax(dim=1).numpy()  # type: ignore[attr-defined]
        return distribution.base_dist.loc.numpy()  # type: ignore[attr-defined]

    @torch.no_grad()
    def values(self, obs: np.ndarray) -> np.ndarray:
        """V(obs), for bootstrapping at truncations and at the end of a rollout."""
        return self.network.values(network_input(obs)).numpy()

    def load(self, weights: Weights, version: int) -> None:
        load_weights(self.network, weights)
        self.version = version


class ActorCriticState:
    """What a learner of one ``ActorCritic`` and one optimizer publishes and checkpoints
    (A2C, PPO, IMPALA): the network's weights, and network, optimizer and update count."""

    network: ActorCritic
    optimizer: torch.optim.Optimizer
    updates: int

    def weights(self) -> Weights:
        return weights_of(self.network)

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])


def time_first(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """B rollouts of [T, E, ...] -> one [T, B*E, ...] rollout: each of the B*E columns one
    env's T consecutive steps, which is what the return recursions run along."""
    def one(x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1)
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])

    return {name: one(tensor) for name, tensor in batch.items()}


def flat_rollouts(batch: Mapping[str, torch.Tensor], gamma: float, lam: float,
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """B rollouts of [T, E, ...] -> every step as a row (columns [B*T*E, ...]), with its
    GAE advantage and value target computed per rollout env, time first."""
    rollout = time_first(batch)
    with torch.no_grad():
        advantages, returns = advantages_and_returns(
            rollout["reward"].float(), rollout["value"].float(), rollout["next_value"].float(),
            rollout["terminated"], rollout["truncated"], gamma, lam)
    flat = {name: tensor.reshape(-1, *tensor.shape[2:]) for name, tensor in rollout.items()}
    return flat, advantages.reshape(-1), returns.reshape(-1)


def rollout_algorithm(name: str, config_type: type, make_learner: LearnerFactory[Any],
                      make_policy: PolicyFactory[Any] = ActorCriticPolicy.of_config,
                      items: Callable[[Any], RolloutItems] = rollout_items,
                      table: TableFactory[Any] = rollout_table) -> Algorithm[Any]:
    """The registration PPO, A2C, TRPO and IMPALA share: rollouts of the actor-critic
    policy from the FIFO rollout table, one from each actor per update, a version after
    every update (synchronous actors wait for it); they differ in their config and their
    update, and IMPALA in how its actors pace themselves (``items``) and its queue."""
    return Algorithm(
        name=name, config_type=config_type, experience=Experience.ROLLOUTS,
        action_spaces=frozenset({"discrete", "box"}), publish_every=1, items=items,
        batch_size=lambda config, num_actors: num_actors, table=table,
        make_policy=make_policy, make_learner=make_learner, shape=shape_rollouts)
