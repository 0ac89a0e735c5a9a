"""``shoal.train`` and ``shoal.load``: a run in this process, as a library user starts one,
and its policy played without the rest of shoal."""

import gymnasium as gym
import numpy as np
import pytest

import shoal
from shoal.launcher.evaluate import evaluate
from shoal.launcher.run_dir import read_events
from shoal.launcher.usage import UsageError

from .live import LIVE_TEST_TIMEOUT
from .test_train_local import FAST


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_train_returns_the_run_and_load_plays_its_policy_alone(tmp_path):
    result = shoal.train("dqn", "CartPole-v1", config=FAST, total_env_steps=6_000, actors=1,
                         envs_per_actor=4, seed=3, eval_every_env_steps=3_000,
                         run_dir=tmp_path / "runs")
    assert result.env_steps >= 6_000 and result.updates > 0
    run_dir = tmp_path / "runs" / result.run_dir.split("/")[-1]
    assert str(run_dir) == result.run_dir and run_dir.name.endswith("-s3")
    start = read_events(run_dir / "events.jsonl", "start")[0]
    # the keyword settings landed in their sections, over the file-like config
    assert start["settings"]["run"]["total_env_steps"] == 6_000
    assert start["settings"]["collection"]["envs_per_actor"] == 4
    assert start["settings"]["algorithm"]["batch_size"] == FAST["batch_size"]
    assert start["settings"]["seed"] == 3

    policy = shoal.load(run_dir)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=12345)
    action = policy.predict(obs)  # one observation, one action
    assert action.shape == () and 0 <= int(action) < 2
    batch = np.stack([obs, obs, obs])
    assert policy.predict(batch).shape == (3,)
    assert (policy.predict(batch) == int(action)).all()  # deterministic: the greedy action
    # an episode played with predict is the one shoal eval plays from the same start
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(int(policy.predict(obs)))
        total += float(reward)
        done = terminated or truncated
    env.close()
    assert evaluate(run_dir, 1).returns == [total]
    with pytest.raises(ValueError, match=r"observations: expected shape \[4\]"):
        policy.predict(np.zeros(5, np.float32))


def test_a_misspelt_setting_names_the_nearest_and_creates_nothing(tmp_path):
    with pytest.raises(UsageError, match=r"unknown key 'learnin_rate' \(did you mean "
                                         r"'learning_rate'\?\)"):
        shoal.train("dqn", "CartPole-v1", learnin_rate=1e-3, run_dir=tmp_path / "runs")
    with pytest.raises(UsageError, match=r"shoal.train: run.total_env_steps: expected an int"):
        shoal.train("dqn", "CartPole-v1", total_env_steps="many", run_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
