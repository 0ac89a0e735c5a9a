"""Policy lag, dropped or corrected: synchronous PPO, asynchronous PPO that drops rollouts
more than K versions old, and IMPALA's V-trace, at equal env steps and at equal wall clock.

    python benchmarks/lag_correction.py [--actors 2 4] [--seeds 0 1 2] [--env-steps 50000] \
        [--seconds 15] [--modes ppo ppo-k1 ppo-k4 impala] [--rollout-length 16] \
        [--run-dir DIR] [--json]

Each cell is a real ``shoal train --local`` on CartPole-v1 with 8 envs per actor and no
target, interrupted (SIGINT) once it is past both cut-offs: --env-steps env steps and
--seconds from its first env step. PPO runs with its defaults but ``rollout_length``
(16: 2 actors x 8 envs x 16 = 256 env steps per update, as SB3's zoo PPO), IMPALA with its
own (also 16). At each cut-off the row says:

- return: the mean of the last 20 training episodes finished by then;
- lag: the mean policy lag, in versions, of the rollouts the learner trained on so far;
- trained: the fraction of the env steps collected so far that the learner trained on
  (rollouts dropped as stale, or still queued, are not);
- and the env steps (at the wall-clock cut-off) or the seconds (at the env-step one).

The env-step cut-off is found between two throughput lines of events.jsonl by linear
interpolation, the episodes by their time; lag and fraction are those of the last
throughput line before the cut-off. With --json the last line is a list of objects:
actors, mode, seed, and for each cut-off (``at_env_steps``, ``at_seconds``) an object
with env_steps, seconds, mean_return, policy_lag, trained_fraction (null where the run
had no such data). Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from actor_throughput import SHOAL, stop

MODES: dict[str, tuple[str, int | None]] = {  # name -> (algo, max_policy_lag)
    "ppo": ("ppo", None), "ppo-k1": ("ppo", 1), "ppo-k4": ("ppo", 4),
    "impala": ("impala", None)}
ENVS_PER_ACTOR = 8
START_UP_SECONDS = 90.0
WINDOW = 20  # training episodes a return is the mean of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--env-steps", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rollout-length", type=int, default=16)
    parser.add_argument("--run-dir", type=Path, help="keep the runs under this folder")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def events(parent: Path) -> list[dict[str, Any]]:
    found = []
    for path in parent.glob("*/events.jsonl"):
        for line in path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                continue
    return found


def run_cell(args: argparse.Namespace, actors: int, mode: str, seed: int,
             parent: Path) -> list[dict[str, Any]]:
    """One run, interrupted once it is past both cut-offs; its events."""
    algo, lag = MODES[mode]
    parent.mkdir(parents=True)
    config = parent / "config.yaml"
    config.write_text(f"rollout_length: {args.rollout_length}\n")
    command = [*SHOAL, "train", "--algo", algo, "--env", "CartPole-v1", "--local",
               "--actors", str(actors), "--envs-per-actor", str(ENVS_PER_ACTOR),
               "--total-env-steps", str(10**12), "--seed", str(seed), "--config", str(config),
               "--run-dir", str(parent)]
    if lag is not None:
        command += ["--max-policy-lag", str(lag)]
    with (parent / "train.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                    signal.SIG_DFL))
    started = time.monotonic()
    try:
        while process.poll() is None:
            time.sleep(0.5)
            lines = [e for e in events(parent) if e["event"] == "throughput"]
            # the first throughput line comes after the first env step: a safe start
            if (lines and lines[-1]["env_steps"] >= args.env_steps
                    and lines[-1]["time"] - lines[0]["time"] >= args.seconds + 2.0):
                break
            if not lines and time.monotonic() - started > START_UP_SECONDS:
                print(f"{mode} {actors} actors seed {seed}: no throughput line after "
                      f"{START_UP_SECONDS:.0f}s", file=sys.stderr)
                break
    finally:
        stop(process)
    return events(parent)


def at_time(lines: list[dict[str, Any]], episodes: list[dict[str, Any]], first_step: float,
            when: float, steps_per_item: int) -> dict[str, Any]:
    """What the run had reached at wall-clock time ``when``."""
    before = [line for line in lines if line["time"] <= when]
    returns = [e["env_return"] for e in episodes if e["time"] <= when][-WINDOW:]
    env_steps = None
    later = [line for line in lines if line["time"] > when]
    if before and later:
        a, b = before[-1], later[0]
        share = (when - a["time"]) / (b["time"] - a["time"])
        env_steps = a["env_steps"] + share * (b["env_steps"] - a["env_steps"])
    lag = trained = None
    if before:
        weights, lags, previous = [], [], 0
        for line in before:
            samples = line["learner_samples"] - previous
            previous = line["learner_samples"]
            if line.get("policy_lag") is not None and samples > 0:
                weights.append(samples)
                lags.append(line["policy_lag"])
        if weights:
            lag = sum(w * x for w, x in zip(weights, lags, strict=True)) / sum(weights)
        last = before[-1]
        if last["env_steps"]:
            trained = last["learner_samples"] * steps_per_item / last["env_steps"]
    return {"env_steps": env_steps, "seconds": when - first_step,
            "mean_return": statistics.fmean(returns) if len(returns) == WINDOW else None,
            "policy_lag": lag, "trained_fraction": trained}


def when_env_steps(lines: list[dict[str, Any]], env_steps: int) -> float | None:
    for a, b in itertools.pairwise(lines):
        if a["env_steps"] <= env_steps <= b["env_steps"] and b["env_steps"] > a["env_steps"]:
            share = (env_steps - a["env_steps"]) / (b["env_steps"] - a["env_steps"])
            return float(a["time"] + share * (b["time"] - a["time"]))
    return None


def measure(args: argparse.Namespace, actors: int, mode: str, seed: int,
            parent: Path) -> dict[str, Any]:
    found = run_cell(args, actors, mode, seed, parent)
    lines = [e for e in found if e["event"] == "throughput"]
    episodes = sorted((e for e in found if e["event"] == "episode"), key=lambda e: e["time"])
    summary = next((e for e in found if e["event"] == "summary"), None)
    row: dict[str, Any] = {"actors": actors, "mode": mode, "seed": seed,
                           "at_env_steps": None, "at_seconds": None}
    if summary is None or not lines:
        return row
    first_step = summary["time"] - summary["seconds_from_first_step"]
    lines = [{"time": first_step, "env_steps": 0, "learner_samples": 0}, *lines]
    steps_per_item = args.rollout_length * ENVS_PER_ACTOR
    when = when_env_steps(lines, args.env_steps)
    if when is not None:
        row["at_env_steps"] = {**at_time(lines, episodes, first_step, when, steps_per_item),
                               "env_steps": args.env_steps}
    row["at_seconds"] = at_time(lines, episodes, first_step, first_step + args.seconds,
                                steps_per_item)
    return row


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"{'actors':>6} {'mode':>7} {'seed':>4} | at {args.env_steps:,} env steps: "
          f"{'return':>6} {'lag':>5} {'trained':>7} {'s':>5} | at {args.seconds:g} s: "
          f"{'return':>6} {'lag':>5} {'trained':>7} {'steps':>7}")
    for row in rows:
        x, y = row["at_env_steps"] or {}, row["at_seconds"] or {}
        print(f"{row['actors']:>6} {row['mode']:>7} {row['seed']:>4} | {'':>17}"
              f"{fmt(x.get('mean_return'), '6.1f')} {fmt(x.get('policy_lag'), '5.2f')} "
              f"{fmt(x.get('trained_fraction'), '7.2f')} {fmt(x.get('seconds'), '5.1f')} | "
              f"{'':>7}{fmt(y.get('mean_return'), '6.1f')} {fmt(y.get('policy_lag'), '5.2f')} "
              f"{fmt(y.get('trained_fraction'), '7.2f')} {fmt(y.get('env_steps'), '7,.0f')}")
    print("means over seeds:")
    for actors in args.actors:
        for mode in args.modes:
            cells = [r for r in rows if r["actors"] == actors and r["mode"] == mode]

            def mean(cut: str, key: str, cells: list[dict[str, Any]] = cells) -> float | None:
                values = [c[cut][key] for c in cells
                          if c[cut] is not None and c[cut][key] is not None]
                return statistics.fmean(values) if values else None

            print(f"{actors:>6} {mode:>7} {'mean':>4} | {'':>17}"
                  f"{fmt(mean('at_env_steps', 'mean_return'), '6.1f')} "
                  f"{fmt(mean('at_env_steps', 'policy_lag'), '5.2f')} "
                  f"{fmt(mean('at_env_steps', 'trained_fraction'), '7.2f')} "
                  f"{fmt(mean('at_env_steps', 'seconds'), '5.1f')} | {'':>7}"
                  f"{fmt(mean('at_seconds', 'mean_return'), '6.1f')} "
                  f"{fmt(mean('at_seconds', 'policy_lag'), '5.2f')} "
                  f"{fmt(mean('at_seconds', 'trained_fraction'), '7.2f')} "
                  f"{fmt(mean('at_seconds', 'env_steps'), '7,.0f')}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.run_dir or Path(tempfile.mkdtemp(prefix="shoal-lag-"))
    rows = []
    for actors in args.actors:
        for seed in args.seeds:  # modes interleaved, so drifts in load hit them alike
            for mode in args.modes:
                row = measure(args, actors, mode, seed, root / f"{actors}-{mode}-s{seed}")
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    print_table(rows, args)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
