"""Learner checkpoints: model, optimizer, target network and counters, written atomically
(a temp file renamed over ``learner.pt``), so a crash leaves the old one or the new one.
``best.pt`` beside it has the same layout: the state the best greedy evaluation so far
played (``learner/evaluation.py``). Each also carries the run's configuration tree (what
``shoal train --print-config`` prints), so ``shoal eval`` plays a checkpoint wherever it
came from: a run directory, a hand-wired learner, a file copied elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from shoal.protos.transport import atomic_path

CHECKPOINT = "learner.pt"
BEST = "best.pt"


def save_checkpoint(directory: Path, state: Mapping[str, Any], counters: Mapping[str, Any],
                    name: str = CHECKPOINT, *,
                    run_config: Mapping[str, Any] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with atomic_path(path) as scratch:
        torch.save({"learner": state, "counters": counters, "config": run_config}, scratch)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / CHECKPOINT
    return torch.load(path, map_location="cpu", weights_only=False)
