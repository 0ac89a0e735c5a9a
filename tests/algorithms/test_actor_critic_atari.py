"""PPO and A2C on Atari frames, with the real Pong env: the policy acts on real frame stacks
through one shared Nature CNN, a real rollout goes through the rollout table (its frames
zstd-compressed) and back, and a learner trains on it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from shoal.actors.collectors import collector_for
from shoal.actors.envs import make_vector_env, probe_spec
from shoal.algorithms.a2c import ALGORITHM as A2C
from shoal.algorithms.a2c import A2CConfig
from shoal.algorithms.actor_critic import ActorCritic, ActorCriticPolicy
from shoal.algorithms.base import EnvSpec
from shoal.algorithms.ppo import ALGORITHM as PPO
from shoal.algorithms.ppo import PPOConfig
from shoal.replay_service.table import Table

ENV = "ALE/Pong-v5"
ENVS = 2
CONFIG = PPOConfig(rollout_length=8, update_epochs=2, num_minibatches=2)


@pytest.fixture(scope="module")
def spec() -> EnvSpec:
    return probe_spec(ENV)


@pytest.fixture(scope="module")
def collected(spec: EnvSpec) -> tuple[ActorCriticPolicy, np.ndarray, dict[str, np.ndarray]]:
    """The policy, the first real observations, and one real rollout item ([1, T, E, ...])
    collected by the actors' own RolloutCollector from ENVS Pong envs."""
    torch.manual_seed(0)
    policy = PPO.make_policy(CONFIG, spec, 0, 1, 0)
    collector = collector_for(PPO, CONFIG, ENVS, policy)
    envs = make_vector_env(ENV, ENVS, seed=0)
    try:
        first, _ = envs.reset(seed=0)
        obs, items = first, None
        while items is None:
            step = policy.act(obs)
            next_obs, rewards, terminated, truncated, info = envs.step(step.actions)
            items = collector.observe(obs, step, rewards, next_obs, terminated, truncated,
                                      info.get("final_obs"))
            obs = next_obs
    finally:
        envs.close()
    columns, priorities = items
    assert priorities is None
    return policy, first, columns


def test_pong_spec_is_a_uint8_frame_stack(spec: EnvSpec):
    assert spec.observation_shape == (4, 84, 84) and spec.observation_dtype == "uint8"
    assert spec.num_actions == 6


def test_policy_acts_on_real_frames_near_uniformly_at_first(collected):
    _, first, _ = collected
    fresh = ActorCriticPolicy(probe_spec(ENV), CONFIG.hidden, seed=1)
    assert first.dtype == np.uint8 and first.shape == (ENVS, 4, 84, 84)
    assert first.max() > first.min()  # real frames, not a blank screen
    step = fresh.act(first)
    assert step.actions.shape == (ENVS,) and step.actions.dtype == np.int64
    assert ((step.actions >= 0) & (step.actions < 6)).all()
    assert step.extras["log_prob"].shape == step.extras["value"].shape == (ENVS,)
    # a policy head of gain 0.01 starts near uniform over the 6 actions
    np.testing.assert_allclose(step.extras["log_prob"], math.log(1 / 6), atol=0.05)
    assert np.isfinite(step.extras["value"]).all()
    assert fresh.greedy(first).shape == fresh.values(first).shape == (ENVS,)


def test_frames_get_one_shared_cnn_torso_and_vectors_keep_separate_mlps(spec: EnvSpec):
    frames = ActorCritic(spec, (64, 64))
    convolutions = [m for m in frames.modules() if isinstance(m, nn.Conv2d)]
    assert len(convolutions) == 3  # one Nature CNN, not one per head
    assert isinstance(frames.policy, nn.Linear) and isinstance(frames.value, nn.Linear)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    distribution, values = frames.distribution_and_values(obs)
    torch.testing.assert_close(distribution.logits, frames.distribution(obs).logits)
    torch.testing.assert_close(values, frames.values(obs))

    vector = ActorCritic(EnvSpec((4,), "float32", num_actions=2), (64, 64))
    assert vector.torso is None
    tanh = [m for m in vector.policy.modules() if isinstance(m, nn.Tanh)]
    assert len(tanh) == 2 and not any(isinstance(m, nn.Conv2d) for m in vector.modules())


def rollout_table(spec: EnvSpec) -> Table:
    return Table.from_spec(PPO.table(CONFIG, spec, ENVS))


def test_rollout_table_compresses_the_frames_and_gives_them_back(spec, collected):
    _, _, columns = collected
    signature = PPO.table(CONFIG, spec, ENVS).signature
    compressed = {name for name, field in signature.items() if field.compression != "none"}
    assert compressed == {"obs"} and signature["obs"].compression == "zstd"
    assert A2C.table(A2CConfig(rollout_length=5), spec, ENVS).signature["obs"].compression == "zstd"

    table = rollout_table(spec)
    raw = sum(field.row_bytes for field in table.signature.values())
    assert columns["obs"].shape == (1, CONFIG.rollout_length, ENVS, 4, 84, 84)
    table.insert(columns)
    stored = table.stats().stored_bytes
    assert stored < raw / 20, (stored, raw)  # Pong rollouts: ~60x, most of it in the frames
    sampled = table.sample(1, timeout=1.0).columns
    for name, column in columns.items():
        np.testing.assert_array_equal(sampled[name], column)


def sampled_batch(spec: EnvSpec, columns: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The rollout as the learner gets it: through the table, as tensors."""
    table = rollout_table(spec)
    table.insert(columns)
    return {name: torch.from_numpy(np.asarray(value))
            for name, value in table.sample(1, timeout=1.0).columns.items()}


@pytest.mark.parametrize(("algorithm", "config"),
                         [(PPO, CONFIG), (A2C, A2CConfig(rollout_length=8))],
                         ids=["ppo", "a2c"])
def test_one_learner_step_on_a_real_rollout(spec, collected, algorithm: Any, config: Any):
    policy, first, columns = collected
    torch.manual_seed(0)
    learner = algorithm.make_learner(config, spec, torch.device("cpu"))
    learner.network.load_state_dict(policy.network.state_dict())  # the policy that acted
    before = {name: value.clone() for name, value in learner.network.state_dict().items()}
    result = learner.step(sampled_batch(spec, columns))
    assert learner.updates == 1
    assert all(math.isfinite(value) for value in result.metrics.values()), result.metrics
    if algorithm is PPO:
        # the first epoch's first minibatch starts from the acting policy: ratio 1
        assert result.metrics["approx_kl"] < 0.05
    after = learner.network.state_dict()
    moved = [name for name in before if not torch.equal(before[name], after[name])]
    assert any(name.startswith("torso.") for name in moved)
    assert {"policy.weight", "value.weight"} <= set(moved)
    follower = ActorCriticPolicy(spec, config.hidden)
    follower.load(learner.weights(), version=1)  # what an actor does with the new weights
    assert follower.act(first).actions.shape == (ENVS,)
