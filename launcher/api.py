"""shoal as a library, the way SB3 and CleanRL users call one::

    import shoal

    result = shoal.train("ppo", "CartPole-v1", total_env_steps=50_000, seed=1)
    policy = shoal.load(result.run_dir)
    action = policy.predict(observation, deterministic=True)

``train`` runs what ``shoal train --local`` runs: every component a thread of this process,
the same configuration (the preset for the algorithm and env, then ``config``, then the
keyword settings) and the same run directory (config.json, events.jsonl, checkpoints,
best.pt), so ``shoal eval``, ``shoal plot`` and ``shoal train --resume`` take it as they
take any run. ``load`` needs none of that running: a checkpoint's networks only.
A bad setting raises ``UsageError`` naming it (``shoal.train: algorithm.learning_rate: ...``),
before anything is created.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shoal.launcher.evaluate import LoadedPolicy, load
from shoal.launcher.training import Summary
from shoal.launcher.usage import UsageError

__all__ = ["LoadedPolicy", "Summary", "load", "train"]


def train(algo: str, env: str, *, config: Mapping[str, Any] | None = None,
          run_dir: Path | str = "runs", preset: bool = True, **settings: Any) -> Summary:
    """Trains ``algo`` on ``env`` to its step budget or ``target_return``; returns the
    summary ``shoal train --json`` prints (``run_dir``, ``reached``, ``mean_return``,
    ``env_steps``, ``best_eval_return``, ...).

    ``settings`` are fields of the run configuration by name: the algorithm's own
    (``learning_rate``, ``batch_size``; ``shoal config --algo X`` lists them) or a
    section's (``total_env_steps``, ``target_return``, ``actors``, ``envs_per_actor``,
    ``seed``, ``eval_every_env_steps``, ``deterministic``...). ``config``: a tree as
    ``--print-config`` prints it, or a flat mapping of the algorithm's settings, under
    them. ``run_dir``: the parent of the run's directory, as ``--run-dir``."""
    from shoal.launcher import deterministic
    from shoal.launcher.config import resolve
    from shoal.launcher.launch import LocalLaunch
    from shoal.launcher.run_dir import new_run_dir, write_config
    from shoal.launcher.training import run

    values = _tree(algo, env, config or {}, settings)
    resolved = resolve(values, preset=preset, source="shoal.train")
    directory = new_run_dir(Path(run_dir), resolved.algo, resolved.env, resolved.seed)
    write_config(directory, resolved.to_dict())
    if resolved.run.deterministic:
        summary, _ = deterministic.run(resolved, directory)
    else:
        summary, _ = run(resolved, directory, LocalLaunch())
    return summary


def _tree(algo: str, env: str, config: Mapping[str, Any],
          settings: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as a tree with ``settings`` placed in the sections whose fields they
    name (the algorithm's first), over it."""
    from shoal.algorithms.registry import ALGORITHMS
    from shoal.launcher.config import SECTIONS
    from shoal.launcher.config_types import unknown_keys

    definition = ALGORITHMS.get(algo)
    if definition is None:
        raise UsageError(f"algo: expected one of {sorted(ALGORITHMS)}, got {algo!r}")
    owners: dict[str, str] = {"seed": ""}
    for section, owner in [*SECTIONS.items(), ("algorithm", definition.config_type)]:
        owners.update({item.name: section for item in dataclasses.fields(owner)})
    sections = ("algorithm", *SECTIONS)
    flat = bool(config) and not set(config) & {"algo", "env", "seed", *sections}
    tree: dict[str, Any] = {"algorithm": dict(config)} if flat else {
        key: dict(value) if isinstance(value, Mapping) else value
        for key, value in config.items()}
    tree.update(algo=algo, env=env)
    unknown = sorted(key for key in settings if key not in owners)
    if unknown:
        raise UsageError(f"{unknown_keys(unknown, sorted(owners))}; settings are fields of "
                         f"{definition.config_type.__name__} or of the run's sections "
                         f"({', '.join(SECTIONS)})")
    for key, value in settings.items():
        section = owners[key]
        if section == "":
            tree[key] = value
        else:
            tree.setdefault(section, {})[key] = value
    return tree
