"""The capacity model's arithmetic on costs given by hand (``benchmarks/capacity.py``
measures real ones and sets the model against real runs): which stage binds, and how each
setting moves the bound it should move."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from capacity_model import (
    Costs,
    Machine,
    Scenario,
    Workload,
    predict,
    update_env_steps,
)

from shoal.algorithms.actor_critic import RolloutShape, shape_rollouts

COSTS = Costs(env_step=5e-6, inference=5e-6, actor_step=20e-6, actor_cpu=21e-6,
              replay_insert_message=200e-6, replay_insert_item=1e-6, replay_sample_item=1e-6,
              replay_priority=1e-6, decode=50e-6, update=1.45e-3, update_cpu=1.6e-3,
              learner_overhead=50e-6, learner_cpu_overhead=60e-6)
DQN = Workload("dqn", False, batch_size=256, samples_per_insert=32.0, items_per_message=256)
TWO_CORES = Machine("2 cores", 2)


def test_learner_bound_dqn_is_batch_over_samples_per_insert_times_the_update() -> None:
    prediction = predict(Scenario(DQN, TWO_CORES, 1, 8), COSTS)
    assert prediction.bottleneck == "learner"
    assert prediction.env_steps_per_s == pytest.approx(256 / (32 * 1.5e-3))
    assert prediction.updates_per_s == pytest.approx(1 / 1.5e-3)
    assert prediction.samples_per_insert == 32.0
    # more actors do not move a learner-bound run
    assert predict(Scenario(DQN, TWO_CORES, 4, 8), COSTS).env_steps_per_s == pytest.approx(
        prediction.env_steps_per_s)


def test_free_actors_are_bound_by_the_actors_then_by_the_cores() -> None:
    free = dataclasses.replace(DQN, samples_per_insert=0.25)
    one = predict(Scenario(free, Machine("16 cores", 16), 1, 8), COSTS)
    assert one.bottleneck == "actors"
    assert one.env_steps_per_s == pytest.approx(1 / 20e-6)
    many = predict(Scenario(free, TWO_CORES, 8, 8), COSTS)
    assert many.bottleneck == "cores"
    assert many.env_steps_per_s < 2 / 21e-6  # the learner and the replay need CPU too


def test_replay_processes_and_nodes_raise_their_own_bounds() -> None:
    heavy = dataclasses.replace(COSTS, replay_sample_item=30e-6, update=1e-5, update_cpu=1e-5)
    one = predict(Scenario(DQN, Machine("64 cores", 64), 60, 8), heavy)
    assert one.bottleneck == "replay"
    two = predict(Scenario(DQN, Machine("64 cores", 64), 60, 8, replay_processes=2), heavy)
    assert two.bounds["replay"] == pytest.approx(2 * one.bounds["replay"])
    # the learner's node holds a quarter of the actors on 4 nodes: more CPU for the rest
    spread = predict(Scenario(DQN, Machine("4 x 64", 64, nodes=4), 60, 8), heavy)
    assert spread.bounds["cores"] > one.bounds["cores"]


@pytest.mark.parametrize(("actors", "envs", "steps"), [(1, 8, 256), (2, 8, 256), (3, 8, 264),
                                                       (5, 4, 260)])
def test_on_policy_update_size_is_the_one_the_run_derives(actors, envs, steps) -> None:
    ppo = Workload("ppo", True, batch_size=actors, env_steps_per_update=256)
    scene = Scenario(ppo, TWO_CORES, actors, envs)
    derived = shape_rollouts(RolloutShape(env_steps_per_update=256), actors * envs)
    assert derived.rollout_length is not None
    assert update_env_steps(scene) == derived.rollout_length * actors * envs == steps


def test_synchronous_on_policy_adds_collection_transit_and_training() -> None:
    ppo = Workload("ppo", True, batch_size=1, env_steps_per_update=256)
    costs = dataclasses.replace(COSTS, update=200e-6, learner_overhead=1e-6, publish=1e-3,
                                replay_insert_message=300e-6, replay_insert_item=0.0,
                                replay_sample_item=2e-6)
    one = predict(Scenario(ppo, TWO_CORES, 1, 8), costs)
    collect, train = 256 * 20e-6, 256 * 201e-6
    transit = 300e-6 + 1e-3 + 256 * 2e-6
    assert one.updates_per_s == pytest.approx(1 / (collect + transit + train))
    assert one.env_steps_per_s == pytest.approx(256 * one.updates_per_s)
    assert one.bottleneck == "learner"
    # actors that want more cores than there are stretch the collection
    crowded = predict(Scenario(ppo, TWO_CORES, 4, 8), dataclasses.replace(costs, update=1e-6))
    assert crowded.bounds["learner"] == pytest.approx(256 / (256 * 2e-6))
    assert crowded.bottleneck == "cores"
    assert crowded.bounds["cores"] == pytest.approx(256 / (64 * 20e-6 * (4 * 21 / 20) / 2))
    # a rollout length given makes the update grow with the actors
    fixed = dataclasses.replace(ppo, rollout_length=128)
    assert update_env_steps(Scenario(fixed, TWO_CORES, 3, 4)) == 128 * 3 * 4
