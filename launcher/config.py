"""The run configuration: one frozen, typed tree, filled once from the command line and a
``--config`` YAML by ``resolve``, and handed to each component as its own typed part.

    TrainConfig                     what a run is (``shoal train --print-config`` prints it)
      algo, env, seed               the algorithm's registry name, a gymnasium id, the seed
      run: RunConfig                budget, target, actor counts, TLS      (launcher)
      collection: CollectionConfig  envs per actor, max_policy_lag         (actors)
      replay: ReplayConfig          replay checkpoints                     (replay service)
      learner: LearnerConfig        learner checkpoints                    (learner)
      algorithm: <Algo>Config       the algorithm's own settings           (algorithms)
      env_spec: EnvSpec             the env's spaces, probed once here

Every default is written once, in its section's dataclass; every field's docstring is its
help (``config_help.py``: ``shoal config --algo X`` lists them all, the flags of ``FLAGS``
show theirs). The precedence is defaults < the preset of the algorithm and env
(``algorithms/presets.py``) < ``--config`` < flags. A value of the wrong type or out of
range is one UsageError naming where it came from: the flag (``--envs-per-actor: ...``) or
the file's key (``--config: collection.envs_per_actor: ...``). Where and how a run is launched
(``--local``, ``--address``, ``--run-dir``, ``--resume``, TLS files, ``--json``) is not
configuration: those stay flags of the command.

This module imports no algorithm (torch) until one is needed: the parser converts a flag's
text by its field's type, and ``shoal train --address`` probes the cluster before torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shoal.actors.config import CollectionConfig
from shoal.algorithms.base import Algorithm, EnvSpec, Experience
from shoal.launcher.autoscale import AutoscaleRange
from shoal.launcher.config_types import ConfigTypeError, checked_overrides, unknown_keys
from shoal.launcher.flags import FLAGS, flag_dest
from shoal.launcher.usage import UsageError
from shoal.learner.config import LearnerConfig
from shoal.protos.tables import TableSpec
from shoal.replay_service.config import ReplayConfig

SEEDS = 2**32
"""The learner seeds numpy's global generator with the run's seed, which takes 0..2**32-1."""


@dataclass(frozen=True)
class RunConfig:
    total_env_steps: int = 200_000
    """The run's step budget; it stops there unless it reached target_return first."""
    target_return: float | None = None
    """Stop once the mean return of the last return_window training episodes reaches this."""
    return_window: int = 20
    """Training episodes the target's mean is over."""
    actors: int = 2
    """Actor processes at the start; with autoscale and no actors given, its MIN."""
    max_actors: int = 16
    """The most actors `shoal scale` may ask for (off-policy algorithms); MAX of autoscale
    when given."""
    autoscale: str | None = None
    """MIN:MAX: keep the learner busy without actors queueing for it by adjusting the actor
    count between MIN and MAX (off-policy algorithms)."""
    tls: bool = False
    """TLS on every channel of the run, with a certificate generated for it (RUN_DIR/tls/)
    unless --tls-cert/--tls-key give one."""
    deterministic: bool = False
    """One actor, the replay table and the learner in lockstep in this process, seeded: two
    runs of one configuration and seed give the same episodes and final weights (slower)."""

    def __post_init__(self) -> None:
        for name in ("total_env_steps", "return_window", "actors", "max_actors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive count, got {getattr(self, name)}")
        bounds = self.autoscale_range
        if bounds is not None:
            object.__setattr__(self, "max_actors", bounds.high)
            if not bounds.low <= self.actors <= bounds.high:
                raise ValueError(f"actors: expected within autoscale {bounds}, "
                                 f"got {self.actors}")
        if self.max_actors < self.actors:
            raise ValueError(f"max_actors: expected >= actors ({self.actors}), "
                             f"got {self.max_actors}")
        for name, refused, why in (("actors", self.actors != 1, f"one actor, got {self.actors}"),
                                   ("autoscale", self.autoscale, "one actor throughout"),
                                   ("tls", self.tls, "one process, no channel to secure")):
            if self.deterministic and refused:
                raise ValueError(f"{name}: a deterministic run has {why}")

    @property
    def autoscale_range(self) -> AutoscaleRange | None:
        if self.autoscale is None:
            return None
        try:
            return AutoscaleRange.parse(self.autoscale)
        except ValueError as error:
            raise ValueError(f"autoscale: {error}") from None


SECTIONS: dict[str, type] = {"run": RunConfig, "collection": CollectionConfig,
                             "replay": ReplayConfig, "learner": LearnerConfig}
"""The tree's sections besides ``algorithm``, whose type is the algorithm's config."""


@dataclass(frozen=True)
class TrainConfig:
    algo: str
    """The algorithm, by its registry name."""
    env: str
    """A gymnasium id, e.g. CartPole-v1 or ALE/Pong-v5."""
    env_spec: EnvSpec = field(compare=False)
    """The env's spaces, probed once by ``resolve``: no component makes an env to learn
    them."""
    algorithm: Any
    """The algorithm's config dataclass (``definition.config_type``)."""
    seed: int = 0
    """The run's seed, the same in each of its processes: the learner seeds torch and numpy
    with it, the replay table its sampling, actor i its envs and exploration with
    seed + 1000 i."""
    run: RunConfig = field(default_factory=RunConfig)
    """The run as a whole: its budget, target and actors."""
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    """How the actors collect."""
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    """The replay service (its table is the algorithm's)."""
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    """The learner process."""
    settings: str = field(default="", compare=False)
    """Where the settings under the flags and --config came from, as ``shoal train`` says
    it at its start: a preset, a family's defaults, or the algorithm's own."""

    @property
    def update_shape(self) -> str | None:
        """How the envs of all actors make one update, for rollout algorithms: ``256 env
        steps per update = 2 actors x 8 envs x 16 steps``, and the setting when the
        division did not come out even; None for the replay algorithms."""
        length = getattr(self.algorithm, "rollout_length", None)
        if length is None:
            return None
        actors, envs = self.run.actors, self.collection.envs_per_actor
        made = actors * envs * length
        asked = self.algorithm.env_steps_per_update
        shape = (f"{made:,} env steps per update = {actors} actor{'s' * (actors != 1)} x "
                 f"{envs} env{'s' * (envs != 1)} x {length} step{'s' * (length != 1)}")
        return shape if made == asked else f"{shape} (env_steps_per_update {asked:,} " \
            f"does not divide by {actors * envs} envs: the nearest)"

    @property
    def definition(self) -> Algorithm[Any]:
        from shoal.algorithms.registry import ALGORITHMS

        return ALGORITHMS[self.algo]

    @property
    def table(self) -> TableSpec:
        """The replay table of the run: the algorithm's, its sampling seeded with the
        run's seed (a restarted replay service starts from the same seed)."""
        return self.definition.table(self.algorithm, self.env_spec,
                                     self.collection.envs_per_actor).seeded(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The tree as ``--config`` reads it back (YAML: lists, not tuples)."""
        return _plain({"algo": self.algo, "env": self.env, "seed": self.seed,
                       **{name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS},
                       "algorithm": dataclasses.asdict(self.algorithm)})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# ------------------------------------------------------------------------------- resolve


@dataclass
class _Origins:
    """Where each set value came from, to name it in an error: its flag, or its key."""

    flags: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    preset: dict[tuple[str, str], str] = field(default_factory=dict)
    flat: bool = False  # --config held the algorithm's settings alone
    source: str = "--config"  # what errors call the mapping: shoal.train's is its arguments

    def level(self, section: str, key: str) -> int:
        """Where in the precedence the value came from: 3 a flag, 2 --config, 1 the
        preset, 0 the defaults."""
        for level, given in ((3, self.flags), (2, self.keys), (1, self.preset)):
            if (section, key) in given:
                return level
        return 0

    def name(self, section: str, key: str) -> str:
        if (section, key) in self.keys:
            return f"{self.source}: {self.keys[section, key]}"
        if (section, key) in self.flags:
            return self.flags[section, key]
        if (section, key) in self.preset:
            return self.preset[section, key]
        flag = next((f for f, place in FLAGS.items() if place == (section, key)), None)
        return flag or f"{self.source}: {section + '.' if section else ''}{key}"


def _read_tree(values: Mapping[str, Any] | None, origins: _Origins) -> dict[str, dict[str, Any]]:
    """``--config`` as sections of raw values: the tree ``--print-config`` prints, or (the
    older form) a flat mapping of algorithm settings."""
    tree: dict[str, dict[str, Any]] = {"": {}, "algorithm": {}, **{s: {} for s in SECTIONS}}
    if not values:
        return tree
    top = {"algo", "env", "seed", "algorithm", *SECTIONS}
    if not set(values) & top:  # flat: the algorithm's settings alone
        tree["algorithm"] = dict(values)
        origins.keys.update({("algorithm", str(k)): str(k) for k in values})
        origins.flat = True
        return tree
    unknown = sorted(str(key) for key in values if key not in top)
    if unknown:
        raise UsageError(f"{origins.source}: {unknown_keys(unknown, sorted(top))}; the run "
                         f"configuration has {sorted(top)}")
    for key in ("algo", "env", "seed"):
        if key in values:
            tree[""][key] = values[key]
            origins.keys["", key] = key
    for section in ("algorithm", *SECTIONS):
        part = values.get(section)
        part = {} if part is None else part  # "replay:" with nothing under it
        if not isinstance(part, Mapping):
            raise UsageError(f"{origins.source}: {section}: expected a mapping, got {part!r}")
        tree[section] = dict(part)
        origins.keys.update({(section, str(k)): f"{section}.{k}" for k in part})
    return tree


def _section(cls: type, section: str, raw: dict[str, Any], origins: _Origins) -> Any:
    """``cls`` built from ``raw``, every value checked against its field's type first."""
    try:
        values = checked_overrides(cls, raw)
    except ConfigTypeError as error:
        if error.key is None:  # unknown keys: only a file can hold them
            where = "" if section == "algorithm" and origins.flat else f"{section}: "
            raise UsageError(f"{origins.source}: {where}{error.message}") from None
        raise UsageError(f"{origins.name(section, error.key)}: {error.message}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        key, _, message = str(error).partition(": ")
        if message and key in {item.name for item in dataclasses.fields(cls)}:
            raise UsageError(f"{origins.name(section, key)}: {message}") from None
        raise UsageError(f"{origins.source}: {section}: {error}") from None


def resolve(values: Mapping[str, Any] | None = None,
            flags: Mapping[str, Any] | None = None, *, check_learner: bool = True,
            preset: bool = True, source: str = "--config") -> TrainConfig:
    """The run's configuration from a ``--config`` mapping and the command's flags (flag ->
    value, those given only), over the preset of the algorithm and env (``preset``:
    ``algorithms/presets.py``); the env is probed here, once. Every problem is a UsageError
    naming its flag or key (a key prefixed by ``source``, what the caller calls the
    mapping); nothing is created."""
    from shoal.actors.envs import UnknownEnv, probe_spec
    from shoal.algorithms.registry import ALGORITHMS

    origins = _Origins(source=source)
    tree = _read_tree(values, origins)
    for flag, value in (flags or {}).items():
        section, key = FLAGS.get(flag, ("", flag_dest(flag)))
        tree[section][key] = value
        origins.flags[section, key] = flag
        origins.keys.pop((section, key), None)
    top = tree[""]
    algo, env = top.get("algo"), top.get("env")
    if algo is None or env is None:
        missing = " and ".join(name for name, v in (("--algo", algo), ("--env", env)) if v is None)
        raise UsageError(f"{missing}: required (a flag, or a key of --config)")
    definition = ALGORITHMS.get(algo)
    if definition is None:
        raise UsageError(f"{origins.name('', 'algo')}: expected one of {sorted(ALGORITHMS)}, "
                         f"got {algo!r}")
    seed = top.get("seed", TrainConfig.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEEDS:
        raise UsageError(f"{origins.name('', 'seed')}: expected 0..{SEEDS - 1}, got {seed}")
    try:
        spec = probe_spec(env)
    except UnknownEnv as error:
        raise UsageError(str(error)) from None
    if spec.action_space not in definition.action_spaces:
        raise UsageError(f"--algo: {algo} acts in {' or '.join(sorted(definition.action_spaces))}"
                         f" action spaces; {env} has a {spec.action_space} one")
    settings_from = _apply_preset(tree, origins, algo, env, spec) if preset else (
        f"{algo}'s defaults (--no-preset)")
    run = tree["run"]
    if run.get("autoscale") is not None and "actors" not in run:  # MIN of the range
        low, _, _ = str(run["autoscale"]).partition(":")
        if low.strip().isdigit():
            run["actors"] = int(low)
    if run.get("deterministic") is True and origins.level("run", "actors") < 2:
        run["actors"] = 1
    sections = {name: _section(cls, name, tree[name], origins) for name, cls in SECTIONS.items()}
    collection: CollectionConfig = sections["collection"]
    num_envs = sections["run"].actors * collection.envs_per_actor
    _one_rollout_setting(tree["algorithm"], origins, num_envs)
    settings = _section(definition.config_type, "algorithm", tree["algorithm"], origins)
    try:
        settings = definition.shape(settings, num_envs)
    except ValueError as error:
        key, _, message = str(error).partition(": ")
        raise UsageError(f"{origins.name('algorithm', key)}: {message}") from None
    if collection.normalize_observations and len(spec.observation_shape) > 1:
        raise UsageError(f"{origins.name('collection', 'normalize_observations')}: for "
                         f"vector observations; {env}'s are frames, already scaled to [0, 1]")
    if (collection.max_policy_lag is not None
            and definition.experience is not Experience.ROLLOUTS):
        raise UsageError(f"{origins.name('collection', 'max_policy_lag')}: only for "
                         f"on-policy algorithms ({', '.join(on_policy())}), not {algo}")
    if sections["run"].autoscale is not None:
        refused = why_actor_count_is_fixed(definition)
        if refused is not None:
            raise UsageError(f"{origins.name('run', 'autoscale')}: {refused}")
    config = TrainConfig(algo=algo, env=env, env_spec=spec, algorithm=settings, seed=seed,
                         settings=settings_from, **sections)
    try:
        table = config.table  # a table the replay service could not build stops it here
    except ValueError as error:
        raise UsageError(f"{source}: {algo}'s replay table refuses these settings: "
                         f"{error}") from None
    per_update = definition.batch_size(settings, config.run.actors)
    if table.is_queue and per_update > table.max_size:  # a sample that can never be served
        raise UsageError(f"{origins.name('run', 'actors')}: {algo} trains on {per_update} "
                         f"rollouts per update (one per actor), more than its queue holds "
                         f"({table.max_size}); fewer actors, or a bigger queue")
    if check_learner:
        _check_learner_builds(config, source)
    return config


def _apply_preset(tree: dict[str, dict[str, Any]], origins: _Origins, algo: str, env: str,
                  spec: EnvSpec) -> str:
    """Fills the tree's unset keys from the preset of ``algo`` on ``env`` (or its family's
    defaults); returns what the run says it took."""
    from shoal.algorithms.presets import family_of, preset_for

    chosen = preset_for(algo, env, spec)
    if chosen is None:
        return f"{algo}'s defaults (no preset for {env}, none for {family_of(spec)})"
    for section, values in chosen.settings.items():
        for key, value in values.items():
            if key not in tree[section]:
                tree[section][key] = value
                origins.preset[section, key] = f"{chosen.description}: {section}.{key}"
    return chosen.description


def _one_rollout_setting(algorithm: dict[str, Any], origins: _Origins, num_envs: int) -> None:
    """Of env_steps_per_update and rollout_length, the one given last in the precedence
    (defaults < preset < --config < flags) wins: a rollout length given in --config over
    a preset's env steps per update sets the update to T x all envs, and an env steps per
    update over a preset's rollout length lets T follow from it. Given at the same level,
    both stand, and must agree (``Algorithm.shape`` says so)."""
    steps, length = ("algorithm", "env_steps_per_update"), ("algorithm", "rollout_length")
    if origins.level(*length) > origins.level(*steps):
        given = algorithm.get("rollout_length")
        if isinstance(given, int) and not isinstance(given, bool) and given >= 1:
            algorithm["env_steps_per_update"] = given * num_envs
    elif origins.level(*steps) > origins.level(*length):
        algorithm.pop("rollout_length", None)


def _check_learner_builds(config: TrainConfig, source: str) -> None:
    """Builds the learner once on the CPU (milliseconds for these networks), so that a value
    its networks or optimizer refuse (torch checks learning rates, for one) stops the
    command here and not in the learner of a started run."""
    import torch

    try:
        config.definition.make_learner(config.algorithm, config.env_spec, torch.device("cpu"))
    except (ValueError, ArithmeticError) as error:
        raise UsageError(f"{source}: {config.algo}'s learner refuses these settings: "
                         f"{type(error).__name__}: {error}") from None


def on_policy() -> list[str]:
    from shoal.algorithms.registry import ALGORITHMS

    return sorted(name for name, a in ALGORITHMS.items() if a.experience is Experience.ROLLOUTS)


def why_actor_count_is_fixed(definition: Algorithm[Any]) -> str | None:
    """Why a run of ``definition`` cannot change its actor count while it goes; None when
    it can."""
    from shoal.algorithms.registry import ALGORITHMS

    if definition.experience is not Experience.ROLLOUTS:
        return None
    scalable = sorted(name for name, a in ALGORITHMS.items()
                      if a.experience is not Experience.ROLLOUTS)
    return (f"actors: {definition.name} trains on one rollout from each actor per update, so "
            f"its actor count is fixed for the run; live scaling is for {', '.join(scalable)}")
