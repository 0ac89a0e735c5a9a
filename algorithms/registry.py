"""The algorithms ``shoal train --algo`` knows. Adding one: a file, and a line here."""

from __future__ import annotations

from typing import Any

from shoal.algorithms.a2c import A2C
from shoal.algorithms.dqn import DQN
from shoal.algorithms.ppo import PPO
from shoal.algorithms.sac import SAC

ALGORITHMS: dict[str, Any] = {DQN.name: DQN, PPO.name: PPO, A2C.name: A2C, SAC.name: SAC}
