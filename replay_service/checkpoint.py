"""Writes every table of a service to a directory atomically, and reads the newest back.

Layout under the checkpoint directory::

    checkpoint-000042/          one complete checkpoint (renamed into place when whole)
        manifest.json           table names, counters, signatures, max sizes
        table-0.npz ...         each table's live items, in key order
    LATEST                      the name of the newest complete checkpoint

A checkpoint is written into a temporary sibling directory and renamed, then LATEST is
replaced (write to a temp file, then rename), so a crash at any moment leaves either the
old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shoal.protos.transport import write_atomically
from shoal.replay_service.table import Table, TableState

LATEST = "LATEST"
KEEP = 2  # older complete checkpoints are deleted after a new one lands


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def save(tables: Mapping[str, Table], directory: Path) -> Path:
    """Checkpoints every table; returns the new checkpoint's directory."""
    directory.mkdir(parents=True, exist_ok=True)
    states = {name: table.state() for name, table in tables.items()}
    sequence = _next_sequence(directory)
    final = directory / f"checkpoint-{sequence:06d}"
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-checkpoint-", dir=directory))
    try:
        manifest: dict[str, list[dict[str, Any]]] = {"tables": []}
        for position, (name, state) in enumerate(states.items()):
            file_name = f"table-{position}.npz"
            with open(scratch / file_name, "wb") as handle:
                np.savez(handle, **state.arrays)
                handle.flush()
                os.fsync(handle.fileno())
            manifest["tables"].append({
                "name": name, "file": file_name, "counters": state.counters,
                "signature": state.signature, "max_size": state.max_size,
            })
        (scratch / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync_file(scratch / "manifest.json")
        os.rename(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    write_atomically(directory / LATEST, final.name, fsync=True)
    _prune(directory, keep=final.name)
    return final


def _next_sequence(directory: Path) -> int:
    existing = [int(p.name.split("-")[1]) for p in directory.glob("checkpoint-*")
                if p.name.split("-")[1].isdigit()]
    return max(existing, default=0) + 1


def _prune(directory: Path, keep: str) -> None:
    complete = sorted(p for p in directory.glob("checkpoint-*") if p.is_dir())
    for old in complete[:-KEEP]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def latest(directory: Path) -> Path | None:
    """The newest complete checkpoint under ``directory``, or None."""
    pointer = directory / LATEST
    if not pointer.exists():
        return None
    path = directory / pointer.read_text().strip()
    return path if (path / "manifest.json").exists() else None


def load(path: Path) -> dict[str, TableState]:
    manifest = json.loads((path / "manifest.json").read_text())
    states = {}
    for entry in manifest["tables"]:
        with np.load(path / entry["file"]) as saved:
            arrays = {key: saved[key] for key in saved.files}
        states[entry["name"]] = TableState(arrays, entry["counters"], entry["signature"],
                                           entry["max_size"])
    return states


def restore(tables: Mapping[str, Table], path: Path) -> None:
    """Restores every table the checkpoint holds; all are checked before any is changed."""
    states = load(path)
    unknown = sorted(set(states) - set(tables))
    if unknown:
        raise ValueError(f"checkpoint {path} holds tables {unknown} the config does not define")
    for name, state in states.items():
        tables[name].check_restorable(state)
    for name, state in states.items():
        tables[name].restore(state)
