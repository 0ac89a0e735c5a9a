"""The n-step adder against a direct computation over recorded episodes."""

import numpy as np
import pytest

from shoal.actors.adders import NStepTransitionAdder


def direct_transitions(observations, rewards, final_obs, terminated, n, gamma):
    """For one episode: (t, R_t, bootstrap observation, discount) computed from the
    definition, for every step t of the episode."""
    length = len(rewards)
    out = []
    for t in range(length):
        m = min(n, length - t)
        ret = sum(gamma ** k * rewards[t + k] for k in range(m))
        ends = t + m == length
        bootstrap = final_obs if ends else observations[t + m]
        discount = 0.0 if (ends and terminated) else gamma ** m
        out.append((t, ret, bootstrap, discount))
    return out


@pytest.mark.parametrize("terminated", [True, False])  # False: truncated by a time limit
@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_step_transitions_match_the_definition(n, terminated):
    gamma = 0.9
    rng = np.random.default_rng(n)
    length = 7
    observations = rng.normal(size=(length, 2)).astype(np.float32)
    final_obs = rng.normal(size=2).astype(np.float32)
    rewards = rng.normal(size=length)
    adder = NStepTransitionAdder(num_envs=1, n_step=n, gamma=gamma)
    emitted = []
    for t in range(length):
        last = t == length - 1
        final = np.empty(1, dtype=object)
        final[0] = final_obs if last else None
        next_obs = observations[t + 1:t + 2] if not last else np.zeros((1, 2), np.float32)
        adder.add(observations[t:t + 1], np.array([t % 2]), rewards[t:t + 1], next_obs,
                  np.array([last and terminated]), np.array([last and not terminated]),
                  final, version=3, extras={"step": np.array([float(t)])})
        taken = adder.take()
        if taken is not None:
            emitted.append(taken)
    columns = {k: np.concatenate([c[k] for c, _ in emitted]) for k in emitted[0][0]}
    extras = {k: np.concatenate([e[k] for _, e in emitted]) for k in emitted[0][1]}
    assert "step" not in columns  # extras travel beside the items, not in them
    expected = direct_transitions(observations, rewards, final_obs, terminated, n, gamma)
    assert len(columns["reward"]) == length
    order = np.argsort(extras["step"])  # the extras of the step each transition starts at
    for (t, ret, bootstrap, discount), row in zip(expected, order, strict=True):
        assert extras["step"][row] == t
        np.testing.assert_array_equal(columns["obs"][row], observations[t])
        assert columns["reward"][row] == pytest.approx(ret, rel=1e-6)
        np.testing.assert_array_equal(columns["next_obs"][row], bootstrap)
        assert columns["discount"][row] == pytest.approx(discount)
    assert set(columns["version"]) == {3}


def test_envs_are_kept_apart():
    adder = NStepTransitionAdder(num_envs=2, n_step=2, gamma=1.0)
    none = np.array([None, None], dtype=object)
    for t in range(3):
        adder.add(np.array([[t], [10 + t]], np.float32), np.array([0, 1]),
                  np.array([1.0, 2.0]), np.array([[t + 1], [11 + t]], np.float32),
                  np.zeros(2, bool), np.zeros(2, bool), none, version=0)
    taken = adder.take()
    assert taken is not None
    items, _ = taken
    pairs = sorted(zip(items["obs"][:, 0].tolist(), items["next_obs"][:, 0].tolist(),
                       items["reward"].tolist(), strict=True))
    assert pairs == [(0.0, 2.0, 2.0), (1.0, 3.0, 2.0), (10.0, 12.0, 4.0), (11.0, 13.0, 4.0)]


def test_rollout_adder_shapes_version_tags_and_bootstrap_values():
    from shoal.actors.adders import RolloutAdder

    envs, length = 3, 4
    adder = RolloutAdder(envs, length)
    rng = np.random.default_rng(0)
    terminated = np.zeros((length, envs), bool)
    truncated = np.zeros((length, envs), bool)
    terminated[1, 0] = True          # env 0 ends at step 1: no bootstrap
    truncated[2, 1] = True           # env 1 is cut at step 2: bootstraps from its final obs
    values = rng.normal(size=(length, envs)).astype(np.float32)
    final_values = np.full((length, envs), 7.0, np.float32)
    for t in range(length):
        assert not adder.full
        adder.add(rng.normal(size=(envs, 4)), np.arange(envs), np.ones(envs),
                  terminated[t], truncated[t], np.full(envs, -0.5), values[t],
                  final_values[t], version=10 + t // 2)
    assert adder.full
    with pytest.raises(RuntimeError, match="full"):
        adder.add(np.zeros((envs, 4)), np.zeros(envs), np.zeros(envs), np.zeros(envs, bool),
                  np.zeros(envs, bool), np.zeros(envs), np.zeros(envs), np.zeros(envs), 12)
    last = np.array([1.0, 2.0, 3.0], np.float32)
    rollout = adder.take(last)
    assert rollout["obs"].shape == (length, envs, 4)
    for name in ("action", "reward", "terminated", "truncated", "log_prob", "value",
                 "next_value", "version"):
        assert rollout[name].shape == (length, envs), name
    assert rollout["version"][:, 0].tolist() == [10, 10, 11, 11]
    next_value = rollout["next_value"]
    assert next_value[0, 2] == values[1, 2] and next_value[2, 2] == values[3, 2]
    assert next_value[1, 0] == 0.0                 # terminated
    assert next_value[2, 1] == 7.0                 # truncated: the final observation's value
    np.testing.assert_array_equal(next_value[-1], last)
    assert "final_value" not in rollout
    assert not adder.full  # a fresh rollout begins
