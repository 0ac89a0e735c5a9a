"""The algorithms ``shoal train --algo`` knows, by module. Adding one: a file in this
folder that ends with ``ALGORITHM = Algorithm(...)``, and its name in ``MODULES``."""

from __future__ import annotations

import importlib
from typing import Any

from shoal.algorithms.base import Algorithm

MODULES = (
    "dqn",   # Double DQN, prioritized n-step replay, Ape-X exploration
    "ppo",   # PPO: clipped surrogate or KL penalty, GAE
    "a2c",   # synchronous advantage actor-critic
    "sac",   # soft actor-critic, Box actions
    "trpo",  # trust region policy optimisation: natural gradient, conjugate gradient
    "impala",  # V-trace actor-critic: actors never wait, the learner corrects for lag
)


def _load(module: str) -> Algorithm[Any]:
    algorithm = getattr(importlib.import_module(f"shoal.algorithms.{module}"), "ALGORITHM", None)
    if not isinstance(algorithm, Algorithm) or algorithm.name != module:
        raise TypeError(f"shoal.algorithms.{module}: expected ALGORITHM = Algorithm(name="
                        f"{module!r}, ...), got {algorithm!r}")
    return algorithm


ALGORITHMS: dict[str, Algorithm[Any]] = {module: _load(module) for module in MODULES}
