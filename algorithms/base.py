"""The few interfaces every algorithm satisfies, in the spirit of ``acme/core.py``.

An algorithm module exposes an ``Algorithm``: a name, a config dataclass, the replay table
it needs, the policy actors run and the learner step the learner runs. How they meet::

    algorithm = ALGORITHMS["dqn"]
    config = algorithm.config_type()                      # defaults that solve CartPole
    table = algorithm.table(config, spec)                 # -> the replay service's config
    policy = algorithm.make_policy(config, spec, actor_index=i, num_actors=n)  # CPU
    learner = algorithm.make_learner(config, spec, device)

    # actor process                                       # learner process
    while True:                                           while True:
        if new_weights: policy.load(weights, version)         batch = next(prefetched)
        step = policy.act(observations)                       result = learner.step(batch)
        ...step the env, hand (obs, step, reward) to            send result.priorities
        the algorithm's adder, which writes items ...           publish learner.weights()

Weights travel as a dict of numpy arrays (``Weights``) so the wire never sees torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class EnvSpec:
    """What an algorithm must know of an environment, without importing gymnasium."""

    observation_shape: tuple[int, ...]
    observation_dtype: str               # "float32", or "uint8" for Atari frames
    action_shape: tuple[int, ...] = ()   # () for a discrete action
    num_actions: int | None = None       # discrete: how many actions
    action_low: tuple[float, ...] = ()   # continuous: Box bounds
    action_high: tuple[float, ...] = ()

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None


class PolicyStep(NamedTuple):
    actions: np.ndarray                          # one per env
    extras: dict[str, np.ndarray] = {}           # per env: q-values, log-probs, values, ...


class Policy(Protocol):
    """What an actor runs, on the CPU, on a batch of observations (one per env)."""

    version: int

    def act(self, observations: np.ndarray) -> PolicyStep: ...
    def load(self, weights: Weights, version: int) -> None: ...


@dataclass
class StepResult:
    metrics: dict[str, float] = field(default_factory=dict)   # losses, mean q, ...
    priorities: np.ndarray | None = None                       # new priorities, per item


class Learner(Protocol):
    """What the learner process runs on each batch (already on its device)."""

    updates: int

    def step(self, batch: Mapping[str, torch.Tensor],
             probabilities: torch.Tensor) -> StepResult: ...
    def weights(self) -> Weights: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Algorithm(Protocol):
    name: str
    config_type: type
    experience: str      # "transitions" or "rollouts": what actors collect for it
    action_spaces: tuple[str, ...]  # "discrete" and/or "box": what it can act in
    publish_every: int   # updates between weight versions

    def table(self, config: Any, spec: EnvSpec, num_envs: int) -> dict[str, Any]:
        """The replay table, in the replay service's config format (``tables:`` entry);
        ``num_envs`` per actor, for items that hold all of an actor's envs."""
        ...

    def batch_size(self, config: Any, num_actors: int) -> int:
        """Items per learner update."""
        ...

    def make_policy(self, config: Any, spec: EnvSpec, actor_index: int,
                    num_actors: int) -> Policy: ...
    def make_learner(self, config: Any, spec: EnvSpec, device: torch.device) -> Learner: ...


def weights_of(module: torch.nn.Module) -> Weights:
    """A module's parameters and buffers as numpy arrays on the CPU (copies)."""
    return {name: tensor.detach().cpu().numpy().copy()
            for name, tensor in module.state_dict().items()}


def load_weights(module: torch.nn.Module, weights: Weights) -> None:
    module.load_state_dict({name: torch.from_numpy(np.array(array))  # writable copies
                            for name, array in weights.items()})
