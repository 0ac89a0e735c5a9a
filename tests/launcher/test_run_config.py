"""The run configuration tree: one function fills it (defaults < --config < flags), it prints
as YAML that --config reads back, every field has its doc, and a value is named by where it
came from when it is wrong."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from shoal.algorithms.registry import ALGORITHMS
from shoal.launcher.config import SECTIONS, TrainConfig, resolve
from shoal.launcher.config_help import field_docs
from shoal.launcher.usage import UsageError

from .test_cli_hardening import run_in_process


def test_print_config_reads_back_as_the_same_tree(tmp_path, capsys):
    code, printed, err = run_in_process(
        capsys, "train", "--local", "--algo", "ppo", "--env", "CartPole-v1", "--seed", "4",
        "--max-policy-lag", "2", "--actors", "3", "--envs-per-actor", "4", "--print-config",
        "--run-dir", str(tmp_path / "runs"))
    assert code == 0, err
    tree = yaml.safe_load(printed)
    assert tree["collection"] == {"envs_per_actor": 4, "max_policy_lag": 2,
                                  "normalize_observations": False}
    assert tree["run"]["actors"] == 3 and tree["seed"] == 4 and tree["algorithm"]["gamma"] == 0.98
    config = tmp_path / "run.yaml"
    config.write_text(printed)
    code, again, err = run_in_process(capsys, "train", "--local", "--config", str(config),
                                      "--print-config", "--run-dir", str(tmp_path / "runs"))
    assert code == 0, err
    assert again == printed
    assert not (tmp_path / "runs").exists()  # printing creates nothing


def test_flags_override_the_file_which_overrides_the_defaults():
    values = {"algo": "dqn", "env": "CartPole-v1",
              "collection": {"envs_per_actor": 3}, "learner": {"checkpoint_every": 50},
              "algorithm": {"batch_size": 32, "gamma": 0.9}}
    config = resolve(values, {"--envs-per-actor": 5, "--seed": 9}, check_learner=False)
    assert config.collection.envs_per_actor == 5           # the flag
    assert config.learner.checkpoint_every == 50           # the file
    assert config.algorithm.batch_size == 32 and config.algorithm.gamma == 0.9
    assert config.run.return_window == 20                  # the default
    assert config.run.total_env_steps == 100_000           # the preset dqn/CartPole-v1
    assert config.seed == 9 and config.table.seed == 9     # the table takes the run's seed
    assert config.env_spec.num_actions == 2                # probed once, carried along
    flat = resolve({"batch_size": 16}, {"--algo": "dqn", "--env": "CartPole-v1"},
                   check_learner=False)                    # the older, flat form
    assert flat.algorithm.batch_size == 16


@pytest.mark.parametrize(("values", "flags", "message"), [
    ({"run": {"return_window": 0}}, {}, "--config: run.return_window: expected a positive"),
    ({}, {"--return-window": 0}, "--return-window: expected a positive count, got 0"),
    ({"collection": {"envs_per_actor": "four"}}, {},
     "--config: collection.envs_per_actor: expected an int, got 'four'"),
    ({"run": {"autoscale": "2:4"}}, {}, "--config: run.autoscale: actors: dqn"),
    ({"replay": []}, {}, "--config: replay: expected a mapping"),
    ({"seed": -3}, {}, "--config: seed: expected 0..4294967295, got -3"),
])
def test_a_bad_value_is_named_by_where_it_came_from(values, flags, message):
    algo = "ppo" if "autoscale" in str(values) else "dqn"
    with pytest.raises(UsageError) as refused:
        resolve({"algo": algo, "env": "CartPole-v1", **values}, flags, check_learner=False)
    assert message.replace("dqn", algo) in str(refused.value)


def test_more_rollouts_per_update_than_the_queue_holds_is_refused_before_the_run():
    """One rollout per actor per update: a queue smaller than that would never serve a
    sample, and the learner would wait forever."""
    base = {"algo": "impala", "env": "CartPole-v1",
            "run": {"actors": 20, "max_actors": 20}}
    with pytest.raises(UsageError, match=r"--config: run.actors: impala trains on 20 "
                                         r"rollouts per update .* its queue holds \(16\)"):
        resolve(base, {}, check_learner=False)
    bigger = resolve({**base, "algorithm": {"max_queued_rollouts": 20}}, {},
                     check_learner=False)
    assert bigger.table.max_size == 20


def test_autoscale_starts_at_its_minimum_unless_actors_are_given():
    base = {"algo": "dqn", "env": "CartPole-v1"}
    config = resolve({**base, "run": {"autoscale": "3:5"}}, check_learner=False)
    assert (config.run.actors, config.run.max_actors) == (3, 5)
    given = resolve({**base, "run": {"autoscale": "3:5"}}, {"--actors": 4}, check_learner=False)
    assert given.run.actors == 4


def test_every_field_of_every_tree_has_its_doc_and_shoal_config_lists_them(capsys):
    for owner in (TrainConfig, *SECTIONS.values(),
                  *(a.config_type for a in ALGORITHMS.values())):
        documented = field_docs(owner)
        undocumented = [f.name for f in dataclasses.fields(owner) if f.name not in documented]
        assert not undocumented, f"{owner.__name__}: {undocumented}"
    code, out, err = run_in_process(capsys, "config", "--algo", "sac")
    assert code == 0, err
    for name in ("total_env_steps", "max_policy_lag", "checkpoint_every_seconds",
                 "min_size_to_sample", "error_buffer", "samples_per_insert"):
        assert f"  {name}: " in out, name
    assert "flag --envs-per-actor" in out and "default 65536.0" in out
