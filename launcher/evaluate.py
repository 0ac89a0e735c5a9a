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

import torch

from shoal.actors.evaluation import GreedyEvaluator
from shoal.algorithms.normalization import RunningStats
from shoal.launcher.config import resolve
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


def evaluate(path: Path, episodes: int, seed: int = 12345, latest: bool = False,
             video_dir: Path | None = None) -> Played:
    """Plays ``episodes`` greedy episodes (env i seeded ``seed + i``) of the checkpoint
    ``resolve_checkpoint`` picks, from the weights its learner would publish; with
    ``video_dir``, the first episode is recorded there too."""
    checkpoint, saved = resolve_checkpoint(path, latest)
    config = resolve(saved, check_learner=False)
    algorithm = config.definition
    learner = algorithm.make_learner(config.algorithm, config.env_spec, torch.device("cpu"))
    state = load_checkpoint(checkpoint)
    learner.load_state_dict(state["learner"])
    normalize = config.collection.normalize_observations
    play = GreedyEvaluator(algorithm, config.algorithm, config.env, config.env_spec,
                           episodes, seed, normalize_observations=normalize,
                           video_dir=video_dir)
    counters = state["counters"]
    weights = learner.weights()
    if normalize and "observation_stats" in counters:  # as the run published them
        weights.update(RunningStats.from_lists(counters["observation_stats"]).to_weights())
    return Played(checkpoint, play(weights, int(counters.get("published_version", 0))))
