"""``shoal eval CHECKPOINT``: play the greedy policy of a learner checkpoint.

A run directory plays its ``best.pt``, the state of the best greedy evaluation during
training, when it has one: the newest weights are not always the best (DQN runs on
CartPole whose training episodes met the target have played short of it greedily from
their final weights about one seed in three). ``--latest`` plays ``learner.pt`` instead.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoal.actors.evaluation import clipped, play_greedy
from shoal.algorithms.base import Policy
from shoal.algorithms.normalization import RunningStats, normalizing
from shoal.launcher.config import TrainConfig, resolve
from shoal.launcher.run_dir import CONFIG
from shoal.learner.checkpoint import BEST, CHECKPOINT, load_checkpoint


@dataclass(frozen=True)
class Played:
    checkpoint: Path            # the file whose policy played
    returns: list[float]        # one per episode

    @property
    def mean_return(self) -> float:
        return statistics.fmean(self.returns)

    @property
    def std_return(self) -> float:
        """Over the episodes played (population: these are all of them)."""
        return statistics.pstdev(self.returns)

    def line(self) -> str:
        return (f"mean return {self.mean_return:.1f} ± {self.std_return:.1f} (min "
                f"{min(self.returns):.1f}, max {max(self.returns):.1f}) over "
                f"{len(self.returns)} episodes of {self.checkpoint}")

    def as_dict(self) -> dict[str, Any]:
        return {"mean_return": self.mean_return, "std_return": self.std_return,
                "min_return": min(self.returns), "max_return": max(self.returns),
                "episodes": len(self.returns), "checkpoint": str(self.checkpoint),
                "returns": self.returns}


def resolve_checkpoint(path: Path, latest: bool = False) -> tuple[Path, dict[str, Any]]:
    """A run directory or its learner/ folder -> its best.pt (learner.pt when it has none,
    or with ``latest``); a file -> that file. Returns it and the run's configuration tree:
    the run directory's config.json, else the one the checkpoint carries."""
    if path.is_file():
        checkpoint: Path | None = path
    else:
        folder = path / "learner" if (path / "learner").is_dir() else path
        names = [CHECKPOINT] if latest else [BEST, CHECKPOINT]
        checkpoint = next((folder / n for n in names if (folder / n).is_file()), None)
    if checkpoint is None:
        raise FileNotFoundError(f"CHECKPOINT: no learner checkpoint at {path}")
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "learner" else checkpoint.parent
    config_file = run_dir / CONFIG
    if config_file.exists():
        return checkpoint, json.loads(config_file.read_text())
    carried = load_checkpoint(checkpoint).get("config")
    if carried is None:
        raise FileNotFoundError(f"CHECKPOINT: {checkpoint} carries no run configuration (it "
                                f"predates checkpoints that do) and {run_dir} has no {CONFIG}")
    return checkpoint, carried


@dataclass(frozen=True)
class LoadedPolicy:
    """A checkpoint's policy, standing alone: no replay service, learner or Ray, only its
    networks (and the observation statistics it was trained with)."""

    checkpoint: Path
    config: TrainConfig
    policy: Policy
    version: int  # the weights' version, as the run published them

    def predict(self, observations: Any, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations [B, *shape], or for one observation: the
        greedy action (the Q-argmax, the Gaussian's mean clipped to the Box), or with
        ``deterministic=False`` one sampled as the actors sample."""
        spec = self.config.env_spec
        batch = np.asarray(observations, dtype=spec.observation_dtype)
        single = batch.shape == tuple(spec.observation_shape)
        if single:
            batch = batch[None]
        if batch.shape[1:] != tuple(spec.observation_shape):
            raise ValueError(f"observations: expected shape {list(spec.observation_shape)} or "
                             f"[B, *{list(spec.observation_shape)}], got {list(batch.shape)}")
        actions = (self.policy.greedy(batch) if deterministic
                   else self.policy.act(batch).actions)
        actions = clipped(actions, None if spec.discrete else (spec.action_low, spec.action_high))
        return actions[0] if single else actions


def load(path: Path | str, latest: bool = False) -> LoadedPolicy:
    """The policy of the checkpoint ``resolve_checkpoint`` picks (a run directory's best.pt,
    or learner.pt with ``latest``; or a .pt file), with the weights its learner would
    publish."""
    checkpoint, saved = resolve_checkpoint(Path(path), latest)
    config = resolve(saved, check_learner=False)
    algorithm = config.definition
    learner = algorithm.make_learner(config.algorithm, config.env_spec, torch.device("cpu"))
    state = load_checkpoint(checkpoint)
    learner.load_state_dict(state["learner"])
    counters = state["counters"]
    weights = learner.weights()
    policy: Policy = algorithm.make_policy(config.algorithm, config.env_spec, 0, 1, config.seed)
    if config.collection.normalize_observations:  # as the run published them
        policy = normalizing(policy, config.env_spec.observation_shape)
        if "observation_stats" in counters:
            weights.update(RunningStats.from_lists(counters["observation_stats"]).to_weights())
    version = int(counters.get("published_version", 0))
    policy.load(weights, version)
    return LoadedPolicy(checkpoint, config, policy, version)


def evaluate(path: Path, episodes: int, seed: int = 12345, latest: bool = False,
             video_dir: Path | None = None) -> Played:
    """Plays ``episodes`` greedy episodes (env i seeded ``seed + i``) of ``load``'s policy;
    with ``video_dir``, the first episode is recorded there too."""
    loaded = load(path, latest)
    return Played(loaded.checkpoint, play_greedy(loaded.policy, loaded.config.env, episodes,
                                                 seed, video_dir))
