"""TRPO's pieces against direct computations: the Fisher-vector product against the full
Hessian of the mean KL, conjugate gradient against a direct solve, the line search's two
conditions; and its update on a problem with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical, kl_divergence

from shoal.actors.envs import probe_spec
from shoal.algorithms.actor_critic import ActorCriticPolicy
from shoal.algorithms.base import EnvSpec
from shoal.algorithms.trpo import (
    TRPOConfig,
    TRPOLearner,
    conjugate_gradient,
    fisher_vector_product,
    get_flat,
    line_search,
    set_flat,
)

from .test_ppo_a2c import VECTOR, bandit_rollouts, paying_probability


def test_fisher_vector_product_is_the_hessian_of_the_mean_kl_times_v():
    torch.manual_seed(0)
    network = nn.Linear(3, 4)  # logits of a categorical policy
    obs = torch.randn(16, 3)
    parameters = list(network.parameters())
    with torch.no_grad():
        old = Categorical(logits=network(obs))
        # move away from the old policy: the Hessian is evaluated at a general point
        for p in parameters:
            p.add_(0.1 * torch.randn_like(p))
    theta = get_flat(parameters)

    def kl_of(flat: torch.Tensor) -> torch.Tensor:
        weight = flat[:12].view(4, 3)
        bias = flat[12:]
        return kl_divergence(old, Categorical(logits=obs @ weight.T + bias)).mean()

    hessian = torch.autograd.functional.hessian(kl_of, theta)
    vector = torch.randn_like(theta)
    damping = 0.1

    def mean_kl() -> torch.Tensor:
        return kl_divergence(old, Categorical(logits=network(obs))).mean()

    product = fisher_vector_product(mean_kl, parameters, vector, damping)
    torch.testing.assert_close(product, hessian @ vector + damping * vector,
                               rtol=1e-4, atol=1e-6)


def test_conjugate_gradient_solves_a_positive_definite_system():
    torch.manual_seed(1)
    a = torch.randn(6, 6, dtype=torch.float64)
    matrix = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    x = conjugate_gradient(lambda v: matrix @ v, b, iterations=20)
    torch.testing.assert_close(x, torch.linalg.solve(matrix, b))
    few = conjugate_gradient(lambda v: matrix @ v, b, iterations=2)  # partial, still a descent
    assert (b @ few) > 0


def test_line_search_takes_the_longest_step_within_the_trust_region():
    """Surrogate θ (higher is better), KL θ²: from θ = 0 along +1 with δ = 0.01, only
    fractions f with f² <= 0.01 are inside; 1, 0.5, 0.25, 0.125 ... gives 0.0625."""
    theta = torch.zeros(1)

    def evaluate() -> tuple[float, float]:
        return float(theta[0]), float(theta[0] ** 2)

    fraction = line_search([theta], torch.ones(1), evaluate, max_kl=0.01, steps=10,
                           backtrack_ratio=0.5)
    assert fraction == 0.0625 and theta.item() == 0.0625
    assert evaluate()[1] <= 0.01


def test_line_search_refuses_a_worse_surrogate_and_restores_the_parameters():
    theta = torch.tensor([0.3])

    def evaluate() -> tuple[float, float]:  # every step along +1 lowers the surrogate
        return -float(theta[0]), 0.0

    assert line_search([theta], torch.ones(1), evaluate, max_kl=1.0, steps=6,
                       backtrack_ratio=0.5) is None
    assert theta.item() == pytest.approx(0.3)


def test_an_update_moves_the_policy_toward_the_paying_action_within_the_region():
    torch.manual_seed(0)
    config = TRPOConfig(max_kl=0.02)
    learner = TRPOLearner(config, VECTOR, torch.device("cpu"))
    policy = ActorCriticPolicy(VECTOR, config.hidden, seed=0)
    rng = np.random.default_rng(0)
    probe = torch.from_numpy(rng.normal(size=(256, 4)).astype(np.float32))
    before = paying_probability(learner.network, probe)
    for version in range(1, 16):
        policy.load(learner.weights(), version)
        result = learner.step(bandit_rollouts(policy, rng))
        assert result.metrics["kl"] <= config.max_kl + 1e-6  # measured, after the step
    assert before < 0.6 and paying_probability(learner.network, probe) > 0.9
    assert learner.updates == 15 and result.metrics["value_loss"] >= 0.0


def test_box_actions_update_and_frames_are_refused():
    spec = probe_spec("Pendulum-v1")
    learner = TRPOLearner(TRPOConfig(value_epochs=1), spec, torch.device("cpu"))
    shape = (1, 4, 2)
    batch = {"obs": torch.randn(*shape, 3), "action": torch.randn(*shape, 1),
             "reward": torch.randn(shape), "terminated": torch.zeros(shape, dtype=torch.bool),
             "truncated": torch.zeros(shape, dtype=torch.bool),
             "log_prob": torch.full(shape, -1.0), "value": torch.zeros(shape),
             "next_value": torch.zeros(shape), "version": torch.zeros(shape, dtype=torch.int64)}
    result = learner.step(batch)
    assert np.isfinite(result.loss) and "log_std" in learner.weights()
    frames = EnvSpec((4, 84, 84), "uint8", num_actions=6)
    with pytest.raises(ValueError, match="trpo takes vector observations"):
        TRPOLearner(TRPOConfig(), frames, torch.device("cpu"))


def test_set_flat_and_get_flat_round_trip():
    parameters = [torch.zeros(2, 3), torch.zeros(4)]
    flat = torch.arange(10.0)
    set_flat(parameters, flat)
    torch.testing.assert_close(get_flat(parameters), flat)
