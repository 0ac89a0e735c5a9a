"""Learner checkpoints: model, optimizer, target network and counters, written atomically
(a temp file renamed over ``learner.pt``), so a crash leaves the old one or the new one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "learner.pt"


def save_checkpoint(directory: Path, state: dict[str, Any], counters: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT
    scratch = directory / f".{CHECKPOINT}.tmp"
    torch.save({"learner": state, "counters": counters}, scratch)
    os.replace(scratch, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / CHECKPOINT
    return torch.load(path, map_location="cpu", weights_only=False)
