"""``shoal eval CHECKPOINT``: play the greedy policy of a learner checkpoint."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoal.actors.envs import make_env
from shoal.launcher.config import resolve
from shoal.launcher.run_dir import CONFIG
from shoal.learner.checkpoint import load_checkpoint


def resolve_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    """A run directory, its learner/ folder, or learner.pt itself -> (learner.pt, the run's
    configuration tree as config.json holds it)."""
    candidates = [path, path / "learner" / "learner.pt", path / "learner.pt"]
    checkpoint = next((c for c in candidates if c.is_file()), None)
    if checkpoint is None:
        raise FileNotFoundError(f"CHECKPOINT: no learner checkpoint at {path}")
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "learner" else checkpoint.parent
    config_file = run_dir / CONFIG
    if not config_file.exists():
        raise FileNotFoundError(f"CHECKPOINT: no {CONFIG} in the run directory {run_dir}")
    return checkpoint, json.loads(config_file.read_text())


def evaluate(path: Path, episodes: int, seed: int = 12345) -> float:
    checkpoint, saved = resolve_checkpoint(path)
    config = resolve(saved, check_learner=False)
    algorithm = config.definition
    env = make_env(config.env, training=False)
    learner = algorithm.make_learner(config.algorithm, config.env_spec, torch.device("cpu"))
    learner.load_state_dict(load_checkpoint(checkpoint)["learner"])
    policy = algorithm.make_policy(config.algorithm, config.env_spec, 0, 1, 0)
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
