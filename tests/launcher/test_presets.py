"""Presets: the catalogue's entries are valid run configurations of their algorithm; the
one ``shoal train`` takes is the env's, else its family's (chosen from the env's spaces);
it sits between the defaults and ``--config`` (defaults < preset < --config < flags); and
the rollout algorithms' update is the same number of env steps whatever the actor count."""

from __future__ import annotations

import dataclasses

import pytest

from shoal.algorithms.base import EnvSpec
from shoal.algorithms.presets import FAMILIES, catalogue, family_of, preset_for
from shoal.algorithms.registry import ALGORITHMS
from shoal.launcher.config import SECTIONS
from shoal.launcher.config import resolve as resolve_config
from shoal.launcher.config_types import checked_overrides
from shoal.launcher.usage import UsageError

from .test_cli_hardening import run_in_process

REQUIRED = {  # the list: algorithm -> envs it names
    "dqn": {"CartPole-v1", "MountainCar-v0", "LunarLander-v3", "ALE/Pong-v5"},
    "ppo": {"CartPole-v1", "Pendulum-v1", "LunarLanderContinuous-v3", "Hopper-v5",
            "ALE/Pong-v5"},
    "a2c": {"CartPole-v1", "LunarLander-v3"},
    "sac": {"Pendulum-v1", "LunarLanderContinuous-v3", "Hopper-v5"},
}
VECTOR_DISCRETE = EnvSpec((6,), "float32", num_actions=3)
VECTOR_BOX = EnvSpec((2,), "float32", action_shape=(1,), action_low=(-1.0,), action_high=(1.0,))
FRAMES = EnvSpec((4, 84, 84), "uint8", num_actions=6)


def resolve(values, flags=None, **options):
    return resolve_config(values, flags, check_learner=False, **options)


def test_the_catalogue_covers_the_named_envs_and_each_entry_is_a_valid_configuration():
    for algo, envs in REQUIRED.items():
        assert envs <= {preset.key for preset in catalogue(algo)}, algo
    checked = 0
    for algo, definition in ALGORITHMS.items():
        for preset in catalogue(algo):
            assert preset.measured, preset
            for section, values in preset.settings.items():
                owner = (definition.config_type if section == "algorithm"
                         else SECTIONS[section])
                owner(**checked_overrides(owner, dict(values)))  # raises on a bad value
                checked += 1
    assert checked >= 25


def test_a_preset_names_its_env_and_a_family_is_chosen_from_the_spaces():
    assert family_of(VECTOR_DISCRETE) == "discrete vector control"
    assert family_of(VECTOR_BOX) == "continuous vector control"
    assert family_of(FRAMES) == "image observations"
    assert set(FAMILIES) == {family_of(s) for s in (VECTOR_DISCRETE, VECTOR_BOX, FRAMES)}
    assert preset_for("ppo", "Pendulum-v1", VECTOR_BOX).key == "Pendulum-v1"
    assert preset_for("ppo", "NoSuchTask-v0", VECTOR_BOX).key == "continuous vector control"
    assert preset_for("ppo", "NoSuchTask-v0", FRAMES).key == "image observations"
    assert preset_for("dqn", "NoSuchTask-v0", VECTOR_DISCRETE).key == "discrete vector control"
    assert preset_for("impala", "NoSuchTask-v0", FRAMES) is None  # nothing tuned: defaults


def test_train_takes_the_envs_preset_or_its_familys_and_says_which():
    pendulum = resolve({"algo": "ppo", "env": "Pendulum-v1"})
    assert pendulum.settings == "preset ppo/Pendulum-v1"
    assert pendulum.algorithm.gamma == 0.9 and pendulum.algorithm.env_steps_per_update == 4096
    acrobot = resolve({"algo": "ppo", "env": "Acrobot-v1"})  # no preset names it
    assert acrobot.settings == "ppo's defaults for discrete vector control"
    assert acrobot.algorithm.env_steps_per_update == 2048
    car = resolve({"algo": "sac", "env": "MountainCarContinuous-v0"})
    assert car.settings == "sac's defaults for continuous vector control"
    assert car.algorithm.hidden == (256, 256)
    none = resolve({"algo": "ppo", "env": "Pendulum-v1"}, preset=False)
    assert none.algorithm == ALGORITHMS["ppo"].shape(ALGORITHMS["ppo"].config_type(), 16)
    assert "--no-preset" in none.settings


def test_precedence_is_defaults_then_preset_then_config_then_flags():
    values = {"algo": "ppo", "env": "Pendulum-v1",
              "run": {"return_window": 5},                 # --config over the default
              "algorithm": {"gamma": 0.95}}                # --config over the preset's 0.9
    config = resolve(values, {"--total-env-steps": 7_000})  # a flag over the preset's 100k
    assert config.run.total_env_steps == 7_000
    assert config.algorithm.gamma == 0.95
    assert config.run.return_window == 5
    assert config.algorithm.gae_lambda == 0.95             # the preset, over the default 0.8
    assert config.algorithm.entropy_coef == 0.0            # the default, which no one set
    over_the_file = resolve({**values, "run": {"total_env_steps": 9_000}},
                            {"--total-env-steps": 8_000})
    assert over_the_file.run.total_env_steps == 8_000


def test_a_bad_value_in_config_is_named_by_its_key_not_by_the_preset():
    with pytest.raises(UsageError, match=r"^--config: algorithm.num_minibatches: expected an int"):
        resolve({"algo": "ppo", "env": "Pendulum-v1", "algorithm": {"num_minibatches": "x"}})


@pytest.mark.parametrize(("algo", "envs"), [("ppo", 8), ("trpo", 8), ("impala", 8),
                                             ("a2c", 5)])  # a2c: 80 steps, by 5, 10, 20
def test_the_update_is_the_same_env_steps_with_1_2_and_4_actors(algo, envs):
    shapes = {}
    for actors in (1, 2, 4):
        config = resolve({"algo": algo, "env": "CartPole-v1"},
                         {"--actors": actors, "--envs-per-actor": envs})
        length = config.algorithm.rollout_length
        shapes[actors] = actors * envs * length
        actor_s = "actor" if actors == 1 else "actors"
        assert config.update_shape == (f"{shapes[actors]:,} env steps per update = "
                                       f"{actors} {actor_s} x {envs} envs x {length} steps")
    assert len(set(shapes.values())) == 1, shapes
    assert shapes[1] == config.algorithm.env_steps_per_update


def test_an_update_that_does_not_divide_takes_the_nearest_rollout_length_and_says_so():
    config = resolve({"algo": "ppo", "env": "CartPole-v1"},
                     {"--actors": 3, "--envs-per-actor": 8})  # 256 / 24
    assert config.algorithm.rollout_length == 11
    assert config.update_shape == ("264 env steps per update = 3 actors x 8 envs x 11 steps "
                                   "(env_steps_per_update 256 does not divide by 24 envs: "
                                   "the nearest)")
    tiny = resolve({"algo": "ppo", "env": "CartPole-v1",
                    "algorithm": {"env_steps_per_update": 3}})
    assert tiny.algorithm.rollout_length == 1  # never 0 steps


def test_a_rollout_length_in_config_wins_over_the_presets_env_steps_per_update():
    config = resolve({"algo": "ppo", "env": "Pendulum-v1", "algorithm": {"rollout_length": 8}})
    assert config.algorithm.rollout_length == 8
    assert config.algorithm.env_steps_per_update == 2 * 8 * 8
    both = {"algo": "ppo", "env": "CartPole-v1",
            "algorithm": {"rollout_length": 8, "env_steps_per_update": 512}}
    with pytest.raises(UsageError, match=r"^--config: algorithm.rollout_length: 8 steps x 8 "
                                         r"envs make 64 env steps per update, not "
                                         r"env_steps_per_update 512"):
        resolve(both)
    flag_over_file = resolve({"algo": "ppo", "env": "CartPole-v1",
                              "algorithm": {"rollout_length": 8}}, {"--actors": 1})
    assert flag_over_file.algorithm.rollout_length == 8  # the file's T, whatever the actors


def test_printed_settings_read_back_to_the_same_configuration(tmp_path, capsys):
    code, printed, err = run_in_process(capsys, "train", "--algo", "ppo", "--env",
                                        "Pendulum-v1", "--actors", "3", "--print-config")
    assert code == 0, err
    assert printed.startswith("# settings: preset ppo/Pendulum-v1\n")
    path = tmp_path / "run.yaml"
    path.write_text(printed)
    again = resolve(__import__("yaml").safe_load(printed))
    first = resolve({"algo": "ppo", "env": "Pendulum-v1"}, {"--actors": 3})
    assert dataclasses.asdict(again.algorithm) == dataclasses.asdict(first.algorithm)
    assert again.run == first.run


def test_shoal_presets_lists_every_entry_with_its_figure(capsys):
    code, out, err = run_in_process(capsys, "presets")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == sum(len(catalogue(algo)) for algo in ALGORITHMS)
    assert any(line.split()[:2] == ["ppo", "Pendulum-v1"] for line in lines)
    code, out, err = run_in_process(capsys, "presets", "--algo", "nope")
    assert code == 2 and "--algo: expected one of" in err
