"""``shoal eval CHECKPOINT``: play the greedy policy of a learner checkpoint."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from shoal.actors.envs import env_spec, make_env
from shoal.algorithms.registry import ALGORITHMS
from shoal.learner.checkpoint import load_checkpoint


def resolve_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    """A run directory, its learner/ folder, or learner.pt itself -> (learner.pt, run config)."""
    candidates = [path, path / "learner" / "learner.pt", path / "learner.pt"]
    checkpoint = next((c for c in candidates if c.is_file()), None)
    if checkpoint is None:
        raise FileNotFoundError(f"CHECKPOINT: no learner checkpoint at {path}")
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "learner" else checkpoint.parent
    config_file = run_dir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"CHECKPOINT: no config.json in the run directory {run_dir}")
    return checkpoint, json.loads(config_file.read_text())


def evaluate(path: Path, episodes: int, seed: int = 12345) -> float:
    checkpoint, settings = resolve_checkpoint(path)
    algorithm = ALGORITHMS[settings["algo"]]
    config = algorithm.config_type(**_tuples(settings["algorithm_config"]))
    env = make_env(settings["env_id"], training=False)
    spec = env_spec(env)
    learner = algorithm.make_learner(config, spec, device=_cpu())
    learner.load_state_dict(load_checkpoint(checkpoint)["learner"])
    policy = algorithm.make_policy(config, spec, actor_index=0, num_actors=1)
    policy.load(learner.weights(), version=0)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action = policy.greedy(np.asarray(obs)[None])[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return statistics.fmean(returns)


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _cpu() -> Any:
    import torch

    return torch.device("cpu")
