"""PPO's objectives and TRPO side by side: final return at equal env steps, per env and seed.

    python benchmarks/ppo_objectives.py [--objectives clip kl_adaptive none trpo] \
        [--seeds 0 1 2] [--cartpole-steps 60000] [--pendulum-steps 200000] [--parallel 2] \
        [--run-dir DIR] [--json]

Each cell is a real ``shoal train --local`` with no target, so every run takes the same
number of env steps; the figure is the run's final mean return over its last 20 training
episodes. The PPO columns (``--algo ppo``) run each env's preset (``algorithms/presets/ppo.yaml``,
``shoal presets --algo ppo --settings``); only ``objective`` changes between them
(kl_adaptive starts from beta 1 and targets KL 0.01; none is the unclipped ratio-weighted
policy gradient, run for the same epochs). The ``trpo`` column is ``--algo trpo`` with the
trust region the PPO objectives approximate, max_kl (δ) 0.01, over TRPO's preset for
the env. Every column sees the same
seeds. Synchronous runs take the same steps whatever the machine's load, so ``--parallel``
runs may share the cores without changing the figures (only their wall time).

With --json the last line is a list of objects: env, objective (``trpo`` for TRPO's
runs), seed, env_steps, mean_return (null if the run failed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]
TRPO = "trpo"  # the column that is TRPO rather than a PPO objective
TRPO_MAX_KL = 0.01  # δ, the KL bound kl_adaptive's target matches


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=["clip", "kl_adaptive", "none", TRPO],
                        help=f"PPO objectives, and {TRPO} for TRPO at max_kl {TRPO_MAX_KL}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cartpole-steps", type=int, default=60_000)
    parser.add_argument("--pendulum-steps", type=int, default=200_000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--run-dir", type=Path,
                        help="keep the runs (events.jsonl, checkpoints) under this folder")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def cell_settings(env: str, objective: str) -> tuple[str, dict[str, Any]]:
    """The algorithm a column runs and what it sets over the preset for ``env``: PPO's
    objective, or TRPO's trust region."""
    if objective == TRPO:
        return "trpo", {"max_kl": TRPO_MAX_KL}
    return "ppo", {"objective": objective}


def run_cell(env: str, objective: str, seed: int, steps: int, actors: int,
             folder: Path) -> dict[str, Any]:
    algo, settings = cell_settings(env, objective)
    config = folder / f"{env}-{objective}-{seed}.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = subprocess.run(
        [*SHOAL, "train", "--local", "--algo", algo, "--env", env, "--actors", str(actors),
         "--seed", str(seed), "--total-env-steps", str(steps), "--config", str(config),
         "--run-dir", str(folder / "runs"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
    row: dict[str, Any] = {"env": env, "objective": objective, "seed": seed,
                           "env_steps": None, "mean_return": None}
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        summary = json.loads(lines[-1])
        row.update(env_steps=summary["env_steps"], mean_return=summary["mean_return"])
    except (IndexError, ValueError, KeyError):
        print(f"{env} {objective} seed {seed}: shoal train exited {result.returncode}",
              file=sys.stderr)
    print(f"{env:<12} {objective:<12} seed {seed}: {row['mean_return']}", file=sys.stderr)
    return row


def print_table(rows: list[dict[str, Any]], objectives: list[str]) -> None:
    """One line per env, one column per objective: each seed's return, then their mean."""
    lines: list[tuple[str, int, list[str]]] = []
    for env in dict.fromkeys(row["env"] for row in rows):
        steps = next((row["env_steps"] for row in rows
                      if row["env"] == env and row["env_steps"] is not None), None)
        cells = []
        for objective in objectives:
            values = [row["mean_return"] for row in rows if row["env"] == env
                      and row["objective"] == objective and row["mean_return"] is not None]
            text = " / ".join(f"{v:.0f}" for v in values)
            if values:
                text += f" (mean {statistics.fmean(values):.0f})"
            cells.append(text)
        lines.append((env, steps or 0, cells))
    width = max([26, *(len(cell) for _, _, cells in lines for cell in cells)])
    print(f"{'env':<12} {'env steps':>9} " + " ".join(f"{o:>{width}}" for o in objectives))
    for env, steps, cells in lines:
        print(f"{env:<12} {steps:>9,} " + " ".join(f"{cell:>{width}}" for cell in cells))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = [(env, objective, seed, steps)
            for env, steps in (("CartPole-v1", args.cartpole_steps),
                               ("Pendulum-v1", args.pendulum_steps))
            for objective in args.objectives for seed in args.seeds]
    with tempfile.TemporaryDirectory(prefix="shoal-ppo-objectives-") as temporary:
        folder = args.run_dir or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            rows = list(pool.map(
                lambda job: run_cell(job[0], job[1], job[2], job[3], args.actors, folder),
                jobs))
    print_table(rows, args.objectives)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
