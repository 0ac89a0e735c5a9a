"""The few interfaces every algorithm satisfies, in the spirit of ``acme/core.py``.

An algorithm module ends with one ``Algorithm`` (``ALGORITHM = Algorithm(...)``): data
naming its config type, the kind of experience its actors collect, the action spaces it
acts in, and the functions that make its replay table, policy and learner. The registry
(``registry.py``) lists them; nothing else needs to know an algorithm's names. How they
meet::

    algorithm = ALGORITHMS["dqn"]
    config = algorithm.shape(algorithm.config_type(), actors * num_envs)  # CartPole's
    table = algorithm.table(config, spec, num_envs)       # -> the replay service's table
    policy = algorithm.make_policy(config, spec, i, n, seed)  # actor i of n, on the CPU
    learner = algorithm.make_learner(config, spec, device)

    # actor process                                       # learner process
    while True:                                           while True:
        if new_weights: policy.load(weights, version)         batch = next(prefetched)
        step = policy.act(observations)                       result = learner.step(batch)
        ...step the env, hand (obs, step, reward) to            send result.priorities
        the collector of algorithm.experience, which            publish learner.weights()
        cuts items as algorithm.items(config) says ...

Weights travel as a dict of numpy arrays (``Weights``) so the wire never sees torch.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from shoal.protos.tables import TableSpec

if TYPE_CHECKING:  # torch only where an algorithm runs: the launcher's parser reads these types
    import torch

Weights = dict[str, np.ndarray]
ActionSpace = Literal["discrete", "box"]



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

    @property
    def action_space(self) -> ActionSpace:
        return "discrete" if self.discrete else "box"


class Experience(enum.Enum):
    """What actors collect for an algorithm: it picks their collector, and whether a run
    may change its actor count while it goes."""

    TRANSITIONS = "transitions"
    """n-step transitions, each its own item, many per Insert message (off-policy)."""
    ROLLOUTS = "rollouts"
    """T steps of every env of an actor as one item, each update one per actor
    (on-policy): the actor count is fixed for the run."""


@dataclass(frozen=True)
class TransitionItems:
    """How an actor cuts its steps into transitions (``Experience.TRANSITIONS``)."""

    n_step: int              # rewards summed before bootstrapping
    gamma: float             # their discount
    items_per_message: int   # transitions per Insert message


@dataclass(frozen=True)
class RolloutItems:
    """How an actor cuts its steps into rollouts (``Experience.ROLLOUTS``)."""

    length: int              # T: env steps per rollout item
    paced: bool = True
    """True: the actors wait for the learner, after every rollout (synchronous) or K + 1
    ahead of it (``max_policy_lag`` K). False: they never wait for weights, and the
    algorithm corrects for the policy lag instead (IMPALA's V-trace)."""


@dataclass(frozen=True)
class PolicyStep:
    actions: np.ndarray                          # one per env
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Per env, what the policy knew when it acted and its algorithm needs later: the
    behaviour log-prob and value (rollouts), Q(s, a) for initial priorities (DQN). The
    collector carries them beside the items without knowing their names."""


@runtime_checkable
class Policy(Protocol):
    """What an actor runs, on the CPU, on a batch of observations (one per env), and what
    ``shoal eval`` plays."""

    version: int

    def act(self, observations: np.ndarray) -> PolicyStep: ...
    def greedy(self, observations: np.ndarray) -> np.ndarray: ...
    def load(self, weights: Weights, version: int) -> None: ...


@runtime_checkable
class TransitionPolicy(Policy, Protocol):
    """A policy whose actors collect transitions."""

    def initial_priorities(self, items: Mapping[str, np.ndarray],
                           extras: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Priorities of new items (Ape-X), from the items and the extras of the steps
        they start at; None: the table gives them its largest priority."""
        ...


@runtime_checkable
class RolloutPolicy(Policy, Protocol):
    """A policy whose actors collect rollouts: they bootstrap from its values at
    truncations and at the end of each rollout."""

    def values(self, observations: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class StepResult:
    """One update's outcome. ``loss`` is what the run logs and exports as the learner's
    loss; ``metrics`` are the algorithm's other figures (each ``*loss`` term is exported
    as one)."""

    loss: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    priorities: np.ndarray | None = None                       # new priorities, per item


@runtime_checkable
class Learner(Protocol):
    """What the learner process runs on each batch (already on its device)."""

    updates: int

    def step(self, batch: Mapping[str, torch.Tensor],
             probabilities: torch.Tensor) -> StepResult: ...
    def weights(self) -> Weights: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


Config = TypeVar("Config")
Config_contra = TypeVar("Config_contra", contravariant=True)


class TableFactory(Protocol[Config_contra]):
    def __call__(self, config: Config_contra, spec: EnvSpec, num_envs: int) -> TableSpec:
        """The replay table; ``num_envs`` per actor, for items that hold all of an
        actor's envs."""
        ...


class PolicyFactory(Protocol[Config_contra]):
    def __call__(self, config: Config_contra, spec: EnvSpec, actor_index: int,
                 num_actors: int, seed: int) -> Policy: ...


class LearnerFactory(Protocol[Config_contra]):
    def __call__(self, config: Config_contra, spec: EnvSpec,
                 device: torch.device) -> Learner: ...


@dataclass(frozen=True)
class Algorithm(Generic[Config]):
    """An algorithm as data: one per algorithm module, one line in the registry."""

    name: str
    config_type: type[Config]
    experience: Experience
    action_spaces: frozenset[ActionSpace]
    publish_every: int                       # updates between weight versions
    items: Callable[[Config], TransitionItems | RolloutItems]
    batch_size: Callable[[Config, int], int]  # items per update, given the actor count
    table: TableFactory[Config]
    make_policy: PolicyFactory[Config]
    make_learner: LearnerFactory[Config]
    shape: Callable[[Config, int], Config] = lambda config, num_envs: config
    """The config with what follows from the envs of all actors (``num_envs``) filled in,
    before anything else reads it: the rollout algorithms derive their rollout length
    from env_steps_per_update; the replay algorithms need nothing (their samples per
    insert already holds whatever the actor count)."""


def weights_of(module: torch.nn.Module) -> Weights:
    """A module's parameters and buffers as numpy arrays on the CPU (copies)."""
    return {name: tensor.detach().cpu().numpy().copy()
            for name, tensor in module.state_dict().items()}


def load_weights(module: torch.nn.Module, weights: Weights) -> None:
    import torch

    module.load_state_dict({name: torch.from_numpy(np.array(array))  # writable copies
                            for name, array in weights.items()})
