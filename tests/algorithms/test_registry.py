"""Every registered algorithm keeps the contract of ``algorithms/base.py``: a policy of the
kind its experience needs, items cut the way its collector expects, a table the replay
service accepts, and a learner step that reports a finite loss. A new algorithm file is
checked by these tests as soon as its name is in the registry."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from shoal.algorithms.base import (
    Algorithm,
    EnvSpec,
    Experience,
    Learner,
    RolloutItems,
    RolloutPolicy,
    StepResult,
    TransitionItems,
    TransitionPolicy,
)
from shoal.algorithms.registry import ALGORITHMS, MODULES
from shoal.protos.tables import TableSpec
from shoal.replay_service.config import spec_from_dict
from shoal.replay_service.table import Table

SPECS = {
    "discrete": EnvSpec((4,), "float32", num_actions=2),
    "box": EnvSpec((3,), "float32", action_shape=(1,), action_low=(-2.0,), action_high=(2.0,)),
}
ENVS = 2


def random_items(table: TableSpec, count: int, spec: EnvSpec,
                 rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """``count`` items of ``table``'s signature with values each field can hold."""
    batch = {}
    for name, field in table.signature.items():
        shape = (count, *field.shape)
        dtype = np.dtype(field.dtype)
        values: np.ndarray
        if dtype == np.bool_:
            values = rng.random(shape) < 0.1
        elif name == "action" and spec.discrete:
            values = rng.integers(0, spec.num_actions or 1, shape)
        elif dtype.kind in "iu":
            values = np.zeros(shape)
        elif name == "log_prob":
            values = np.full(shape, -1.0)
        else:
            values = rng.normal(size=shape)
        batch[name] = torch.from_numpy(np.asarray(values).astype(dtype))
    return batch


@pytest.fixture(params=sorted(ALGORITHMS), ids=str)
def algorithm(request: pytest.FixtureRequest) -> Algorithm[Any]:
    return ALGORITHMS[request.param]


def test_the_registry_lists_each_module_once_by_its_own_name():
    assert list(ALGORITHMS) == list(MODULES)
    assert all(isinstance(a, Algorithm) and a.name == name for name, a in ALGORITHMS.items())


def test_each_algorithm_keeps_the_contract(algorithm):
    config = algorithm.shape(algorithm.config_type(), 2 * ENVS)  # 2 actors of ENVS envs
    torch.manual_seed(0)
    for space in sorted(algorithm.action_spaces):
        spec = SPECS[space]
        policy = algorithm.make_policy(config, spec, 0, 2, 0)
        items = algorithm.items(config)
        if algorithm.experience is Experience.TRANSITIONS:
            assert isinstance(policy, TransitionPolicy) and isinstance(items, TransitionItems)
        else:
            assert isinstance(policy, RolloutPolicy) and isinstance(items, RolloutItems)
        step = policy.act(np.zeros((ENVS, *spec.observation_shape), np.float32))
        assert len(step.actions) == ENVS
        assert all(len(extra) == ENVS for extra in step.extras.values())

        table = algorithm.table(config, spec, ENVS)
        assert spec_from_dict(table.to_dict()) == table  # as the tables YAML writes it
        Table.from_spec(table)
        learner = algorithm.make_learner(config, spec, torch.device("cpu"))
        assert isinstance(learner, Learner)
        count = algorithm.batch_size(config, 2)
        batch = random_items(table, count, spec, np.random.default_rng(0))
        probabilities = torch.full((count,), 1.0 / count, dtype=torch.float64)
        result = learner.step(batch, probabilities)
        assert isinstance(result, StepResult) and math.isfinite(result.loss)
        assert all(math.isfinite(value) for value in result.metrics.values())
        assert result.priorities is None or result.priorities.shape == (count,)
        assert learner.updates == 1
        policy.load(learner.weights(), 1)  # strict: what it publishes is what actors load
        assert policy.version == 1
