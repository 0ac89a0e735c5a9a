"""SAC's pieces on hand-made numbers, and its learner and policy on a Pendulum-shaped spec."""

import io
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import (
    AffineTransform,
    Normal,
    TanhTransform,
    TransformedDistribution,
)

from shoal.algorithms.base import EnvSpec, weights_of
from shoal.algorithms.sac import ALGORITHM as SAC
from shoal.algorithms.sac import (
    SACConfig,
    SACLearner,
    SACPolicy,
    polyak_update,
    temperature_loss,
)
from shoal.algorithms.sac_networks import squashed_gaussian_log_prob
from shoal.protos.tables import FieldSpec, Prioritized, SampleToInsertRatio, Uniform
from shoal.replay_service.config import spec_from_dict, table_from_dict

PENDULUM = EnvSpec((3,), "float32", action_shape=(1,), action_low=(-2.0,), action_high=(2.0,))
# two action dimensions with different bounds: scale (1.5, 0.5), bias (0.5, 0.5)
BOX_2D = EnvSpec((4,), "float32", action_shape=(2,), action_low=(-1.0, 0.0),
                 action_high=(2.0, 1.0))


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks: a second thread only contends with whatever else runs (10x slower
    on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_log_prob(mean, std, pre_tanh, scale, bias):
    """log-density of a = scale * tanh(u) + bias, u ~ N(mean, std), from torch's own
    transforms, summed over the action dims."""
    distribution = TransformedDistribution(
        Normal(mean, std), [TanhTransform(), AffineTransform(bias, scale)])
    action = torch.tanh(pre_tanh) * scale + bias
    return distribution.log_prob(action).sum(-1)


def test_squashed_log_prob_matches_torch_transforms_unit_bounds():
    mean = torch.tensor([[0.3, -1.0], [0.0, 2.0]], dtype=torch.float64)
    log_std = torch.tensor([[-0.5, 0.2], [0.0, -1.0]], dtype=torch.float64)
    pre_tanh = torch.tensor([[0.1, -0.7], [1.2, 2.5]], dtype=torch.float64)
    ours = squashed_gaussian_log_prob(mean, log_std, pre_tanh)
    expected = reference_log_prob(mean, log_std.exp(), pre_tanh, 1.0, 0.0)
    torch.testing.assert_close(ours, expected)


def test_squashed_log_prob_by_hand_with_action_scale():
    # one action dim, scale 2: log N(u) - log(1 - tanh(u)^2) - log 2, by hand in numpy
    mean, std, u = 0.5, 0.8, -0.3
    normal = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = normal - np.log(1 - np.tanh(u) ** 2) - np.log(2.0)
    ours = squashed_gaussian_log_prob(torch.tensor([[mean]]), torch.tensor([[np.log(std)]]),
                                      torch.tensor([[u]]), torch.tensor([2.0]))
    assert ours.shape == (1,)
    assert ours.item() == pytest.approx(expected, rel=1e-5)


def test_squashed_log_prob_with_per_dimension_scales_and_far_tails():
    scale = torch.tensor([1.5, 0.5], dtype=torch.float64)
    mean = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    log_std = torch.tensor([[0.3, -0.4]], dtype=torch.float64)
    pre_tanh = torch.tensor([[0.9, -1.4]], dtype=torch.float64)
    expected = reference_log_prob(mean, log_std.exp(), pre_tanh, scale, 0.5)
    torch.testing.assert_close(squashed_gaussian_log_prob(mean, log_std, pre_tanh, scale),
                               expected)
    # where float32 tanh rounds to 1 the stable form stays finite and exact:
    # log(1 - tanh(u)^2) ~ log 4 - 2u for large u
    far = squashed_gaussian_log_prob(torch.zeros(1, 1), torch.zeros(1, 1),
                                     torch.tensor([[20.0]]))
    by_hand = -0.5 * 20.0 ** 2 - 0.5 * math.log(2 * math.pi) - (math.log(4.0) - 40.0)
    assert far.item() == pytest.approx(by_hand, rel=1e-6)


def test_polyak_update_moves_the_target_by_exactly_tau():
    target, online = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[1.0, -2.0]]))
        target.bias.fill_(4.0)
        online.weight.copy_(torch.tensor([[3.0, 2.0]]))
        online.bias.fill_(0.0)
    polyak_update(target, online, tau=0.25)
    torch.testing.assert_close(target.weight, torch.tensor([[1.5, -1.0]]))
    torch.testing.assert_close(target.bias, torch.tensor([3.0]))
    torch.testing.assert_close(online.weight, torch.tensor([[3.0, 2.0]]))  # untouched
    polyak_update(target, online, tau=1.0)
    torch.testing.assert_close(target.weight, online.weight)


@pytest.mark.parametrize(("entropy", "direction"), [(-3.0, 1.0), (1.0, -1.0)])
def test_temperature_rises_below_the_target_entropy_and_falls_above(entropy, direction):
    target_entropy = -1.0
    log_alpha = torch.tensor(0.0, requires_grad=True)
    log_prob = torch.full((8,), -entropy)  # E[-log pi] = entropy
    optimizer = torch.optim.SGD([log_alpha], lr=0.1)
    loss = temperature_loss(log_alpha, log_prob, target_entropy)
    loss.backward()
    # d loss / d log alpha = -(E[log pi] + target) = entropy - target
    assert log_alpha.grad is not None
    assert log_alpha.grad.item() == pytest.approx(entropy - target_entropy)
    optimizer.step()
    assert np.sign(log_alpha.item()) == direction
    assert log_alpha.item() == pytest.approx(-0.1 * (entropy - target_entropy))


def random_batch(spec: EnvSpec, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(spec.action_low), torch.tensor(spec.action_high)
    return {
        "obs": torch.randn(size, *spec.observation_shape, generator=generator),
        "action": low + (high - low) * torch.rand(size, *spec.action_shape,
                                                  generator=generator),
        "reward": torch.randn(size, generator=generator),
        "next_obs": torch.randn(size, *spec.observation_shape, generator=generator),
        "discount": torch.where(torch.rand(size, generator=generator) < 0.2, 0.0, 0.99),
        "version": torch.zeros(size, dtype=torch.int64),
    }


def test_learner_steps_change_every_part_and_the_state_dict_round_trips():
    torch.manual_seed(0)
    config = SACConfig(hidden=(32, 32), tau=0.1)
    learner = SACLearner(config, BOX_2D, torch.device("cpu"))
    assert learner.target_entropy == -2.0
    batch = random_batch(BOX_2D, 64)
    probabilities = torch.full((64,), 1 / 64, dtype=torch.float64)
    actor_before = learner.weights()
    q_before = [p.clone() for p in learner.q.parameters()]
    target_before = [p.clone() for p in learner.q_target.parameters()]
    for _ in range(3):
        result = learner.step(batch, probabilities)
    assert learner.updates == 3
    assert result.priorities is None
    assert math.isfinite(result.loss)
    assert set(result.metrics) >= {"q_loss", "policy_loss", "alpha", "alpha_loss", "entropy"}
    assert all(math.isfinite(value) for value in result.metrics.values())
    assert result.metrics["alpha"] != 1.0   # autotune moved it from initial_alpha
    after = learner.weights()
    assert set(after) == set(actor_before)  # the policy only: no Q weights to the actors
    assert not any(name.startswith("q") for name in after)
    assert any(not np.array_equal(actor_before[n], after[n]) for n in after)
    assert any(not torch.equal(a, b) for a, b in
               zip(q_before, learner.q.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in
               zip(target_before, learner.q_target.parameters(), strict=True))
    # the target trails the online networks
    assert any(not torch.equal(a, b) for a, b in
               zip(learner.q_target.parameters(), learner.q.parameters(), strict=True))

    saved = io.BytesIO()   # through torch.save, as a checkpoint goes: no shared tensors
    torch.save(learner.state_dict(), saved)
    saved.seek(0)
    restored = SACLearner(config, BOX_2D, torch.device("cpu"))
    restored.load_state_dict(torch.load(saved, weights_only=False))
    assert restored.updates == 3
    assert restored.log_alpha.item() == learner.log_alpha.item()
    obs, action = batch["obs"], batch["action"]
    for ours, theirs in ((learner.q(obs, action), restored.q(obs, action)),
                         (learner.q_target(obs, action), restored.q_target(obs, action)),
                         (learner.actor(obs), restored.actor(obs))):
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and the next update is the same one, optimizer moments included
    torch.manual_seed(1)
    expected = learner.step(batch, probabilities).metrics
    torch.manual_seed(1)
    assert restored.step(batch, probabilities).metrics == expected


def test_learner_fits_the_target_on_terminal_transitions():
    """With discount 0 the target is the reward: the Q loss must fall."""
    torch.manual_seed(0)
    learner = SACLearner(SACConfig(hidden=(32, 32), q_learning_rate=1e-2), PENDULUM,
                         torch.device("cpu"))
    batch = random_batch(PENDULUM, 32)
    batch["discount"] = torch.zeros(32)
    probabilities = torch.full((32,), 1 / 32, dtype=torch.float64)
    losses = [learner.step(batch, probabilities).metrics["q_loss"] for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_prioritized_learner_returns_td_priorities():
    torch.manual_seed(0)
    learner = SACLearner(SACConfig(hidden=(16,), prioritized=True), PENDULUM,
                         torch.device("cpu"))
    probabilities = torch.linspace(0.01, 0.05, 16, dtype=torch.float64)
    result = learner.step(random_batch(PENDULUM, 16), probabilities)
    assert result.priorities is not None
    assert result.priorities.shape == (16,)
    assert np.all(result.priorities >= 1e-3)


def test_actors_share_the_random_phase():
    """min_size_to_sample counts the run's env steps: 2 actors take half each."""
    config = SACConfig(hidden=(16, 16), min_size_to_sample=10)
    policy = SACPolicy(config, BOX_2D, actor_index=1, num_actors=2, seed=3)
    obs = np.zeros((1, 4), np.float32)
    for _ in range(5):
        assert policy.random
        policy.act(obs)
    assert not policy.random


def test_policy_explores_uniformly_then_samples_inside_the_bounds():
    config = SACConfig(hidden=(16, 16), min_size_to_sample=10)
    policy = SACPolicy(config, BOX_2D, actor_index=0, num_actors=1, seed=3)
    rng = np.random.default_rng(0)
    random_actions = []
    for _ in range(3):   # 3 vector steps of 4 envs: 0, 4, 8 < 10 are random
        assert policy.random
        step = policy.act(rng.normal(size=(4, 4)).astype(np.float32))
        assert step.actions.shape == (4, 2)
        assert step.actions.dtype == np.float32
        random_actions.append(step.actions)
    assert policy.env_steps == 12 and not policy.random
    # the random phase ignores the network: a policy with other weights, same seed,
    # draws the same actions
    twin = SACPolicy(config, BOX_2D, 0, 1, seed=3)
    nn.init.constant_(twin.actor.net[-1].bias, 5.0)
    for expected in random_actions:
        np.testing.assert_array_equal(twin.act(np.zeros((4, 4), np.float32)).actions,
                                      expected)

    low, high = np.array([-1.0, 0.0]), np.array([2.0, 1.0])
    # the policy's own samples, from a network pushed toward the edges of the box
    nn.init.normal_(policy.actor.net[-1].weight, std=3.0)
    sampled = np.concatenate([policy.act(rng.normal(size=(256, 4)).astype(np.float32)).actions
                              for _ in range(4)])
    assert np.all(sampled >= low) and np.all(sampled <= high)
    assert sampled.std(axis=0).min() > 0.05  # stochastic, not the mean
    uniform = np.concatenate(random_actions)
    assert np.all(uniform >= low) and np.all(uniform <= high)


def test_uniform_phase_covers_the_box():
    policy = SACPolicy(SACConfig(min_size_to_sample=4000), PENDULUM, 0, 1, seed=0)
    actions = policy.act(np.zeros((4000, 3), np.float32)).actions[:, 0]
    assert actions.min() >= -2.0 and actions.max() <= 2.0
    assert actions.mean() == pytest.approx(0.0, abs=0.1)
    assert actions.std() == pytest.approx(4.0 / math.sqrt(12), rel=0.05)  # U(-2, 2)
    assert not policy.random


def test_greedy_is_deterministic_and_the_rescaled_tanh_of_the_mean():
    config = SACConfig(hidden=(16,), min_size_to_sample=1)
    learner = SACLearner(config, BOX_2D, torch.device("cpu"))
    policy = SAC.make_policy(config, BOX_2D, 0, 1, 0)
    policy.load(learner.weights(), version=7)
    assert policy.version == 7
    obs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    first, second = policy.greedy(obs), policy.greedy(obs)
    np.testing.assert_array_equal(first, second)
    mean, _ = learner.actor(torch.from_numpy(obs))
    expected = torch.tanh(mean).detach().numpy() * [1.5, 0.5] + [0.5, 0.5]
    np.testing.assert_allclose(first, expected, rtol=1e-6)
    assert policy.initial_priorities({}, {}) is None


def test_table_is_a_valid_replay_config_with_float_actions():
    config = SACConfig(min_size_to_sample=500, buffer_size=10_000)
    spec = SAC.table(config, PENDULUM, 4)
    assert spec.selector == Uniform()
    assert spec.signature["action"] == FieldSpec("float32", (1,))
    assert spec.rate_limiter == SampleToInsertRatio(256.0, 500, 65_536.0)
    entry = spec.to_dict()
    assert entry["rate_limiter"]["min_size_to_sample"] == 500
    table = table_from_dict(entry)   # the replay service's YAML reads it back as it is
    assert table.max_size == 10_000 and spec_from_dict(entry) == spec
    prioritized = SAC.table(SACConfig(prioritized=True), PENDULUM, 1)
    assert prioritized.selector == Prioritized(0.6)
    assert spec_from_dict(prioritized.to_dict()) == prioritized
    assert SAC.batch_size(config, 3) == 256


def test_discrete_and_unbounded_specs_are_refused_by_name():
    cartpole = EnvSpec((4,), "float32", num_actions=2)
    with pytest.raises(ValueError, match="num_actions"):
        SACLearner(SACConfig(), cartpole, torch.device("cpu"))
    with pytest.raises(ValueError, match="num_actions"):
        SAC.make_policy(SACConfig(), cartpole, 0, 1, 0)
    unbounded = EnvSpec((3,), "float32", action_shape=(1,), action_low=(-math.inf,),
                        action_high=(math.inf,))
    with pytest.raises(ValueError, match="action_low"):
        SAC.table(SACConfig(), unbounded, 1)
    with pytest.raises(ValueError, match="tau"):
        SACConfig(tau=0.0)


def test_an_actor_whose_first_weights_are_trained_skips_the_random_phase():
    """A restarted or added actor, or a resumed run: version 1 is the learner's initial
    weights, anything later is trained."""
    config = SACConfig(hidden=(16, 16), min_size_to_sample=10)
    fresh = SACPolicy(config, BOX_2D, seed=3)
    fresh.load(weights_of(fresh.actor), version=1)
    assert fresh.random
    joining = SACPolicy(config, BOX_2D, seed=3)
    joining.load(weights_of(joining.actor), version=40)
    assert not joining.random
