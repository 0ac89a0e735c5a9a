"""Time to solve: train one run per seed until a target return, then evaluate it greedily.

    python benchmarks/time_to_solve.py --algo dqn --env CartPole-v1 --actors 2 \
        --seeds 0 1 2 [--envs-per-actor E] [--total-env-steps N] [--target-return 475] \
        [--return-window 20] [--eval-episodes 20] [--local] [--config FILE] [--run-dir DIR] \
        [--sb3] [--json]

Each seed is one ``shoal train ... --target-return R --return-window W --json`` subprocess
(the same command a user types, so the launch, imports and teardown are in the time), followed by
``shoal eval RUN_DIR --episodes K --json`` on its final checkpoint. The training target is
the mean of the last W *training* episodes, which explore; the greedy evaluation says
whether the learned policy itself is that good.

Prints one row per seed; with --json the last line is a JSON list with one object per seed:
the train summary keys (reached, mean_return, env_steps, updates, seconds_from_first_step,
seconds_total, run_dir) plus seed, command_seconds (wall time of the train command, from
its start to its exit), eval_mean_return and eval_episodes; a seed whose train or eval
command failed also has an ``error`` string, and null for what it could not measure.

With --sb3, each seed's shoal run is followed by Stable-Baselines3's on the same task, seed
and target (``sb3_time_to_solve.py``: rl-baselines3-zoo's tuned settings, the same
last-20-episodes criterion), so the two are measured side by side under the same machine
load. SB3 runs shoal's algorithm's peer (``SB3_PEER``): the same algorithm where SB3 has
it (trpo is sb3-contrib's TRPO), ppo for impala (shoal's V-trace actor-critic, which SB3
lacks). Rows then also carry ``sb3`` (sb3_algo, the peer's name; reached, mean_return,
env_steps, seconds_from_first_step, seconds_total, command_seconds) and ``ratio_to_sb3``
(shoal's seconds from the first env step over SB3's, when both reached the target). SB3
learns over shoal's step budget (--total-env-steps, else the one shoal's settings give):
the zoo's learning-rate and clip schedules anneal over it, so a different budget is a
different SB3 (PPO on CartPole-v1 took a median 25.8k env steps over seeds 0-5 with a
500k budget, 30.4k over seeds 0-9 with the zoo's 100k). Nothing is asserted: the machine
is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from shoal.launcher.exit_codes import TARGET_MISSED, TRAINED

# The interpreter running this script has shoal installed; `-m` runs the `shoal` entry point.
SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]
TRAIN_KEYS = ("reached", "mean_return", "env_steps", "updates", "seconds_from_first_step",
              "seconds_total", "run_dir")
BAD_ARGUMENTS = 2  # shoal's exit code for a bad argument: every seed would fail alike
# The SB3 algorithm a shoal algorithm is measured against where SB3 lacks it; any other is
# its own peer (trpo included: sb3_time_to_solve.py takes it from sb3-contrib).
SB3_PEER = {"impala": "ppo"}


def sb3_peer(algo: str) -> str:
    return SB3_PEER.get(algo, algo)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="dqn")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--envs-per-actor", type=int, help="default: shoal's")
    parser.add_argument("--total-env-steps", type=int, help="step budget; default: shoal's")
    parser.add_argument("--target-return", type=float, default=475.0)
    parser.add_argument("--return-window", type=int, default=20,
                        help="training episodes the target's mean is over (shoal and SB3)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--local", action="store_true", help="passed through to shoal train")
    parser.add_argument("--config", type=Path, help="algorithm settings YAML for shoal train")
    parser.add_argument("--run-dir", type=Path,
                        help="parent of the runs (default: a new temporary directory)")
    parser.add_argument("--sb3", action="store_true",
                        help="also time Stable-Baselines3 on each seed (the bench extra)")
    parser.add_argument("--json", action="store_true", help="end with a JSON list of seeds")
    return parser.parse_args(argv)


def train_command(args: argparse.Namespace, seed: int, parent: Path) -> list[str]:
    """The user's command line; optional settings are passed only when given, so a run
    without them measures shoal's own defaults."""
    command = [*SHOAL, "train", "--algo", args.algo, "--env", args.env,
               "--actors", str(args.actors), "--seed", str(seed),
               "--target-return", str(args.target_return),
               "--return-window", str(args.return_window), "--run-dir", str(parent), "--json"]
    if args.envs_per_actor is not None:
        command += ["--envs-per-actor", str(args.envs_per_actor)]
    if args.total_env_steps is not None:
        command += ["--total-env-steps", str(args.total_env_steps)]
    if args.config is not None:
        command += ["--config", str(args.config)]
    if args.local:
        command.append("--local")
    return command


def last_json_line(stdout: str) -> Any:
    """shoal's contract with --json is that the last stdout line is JSON; anything printed
    before it is for people."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output")
    return json.loads(lines[-1])


def resolved_run(algo: str, env: str, extra: list[str]) -> tuple[str, int]:
    """(what shoal says its settings are, the run's total_env_steps) for ``shoal train
    --algo A --env E *extra``, from ``--print-config``: the resolution ``shoal train``
    does, in seconds. Raises RuntimeError if it fails."""
    command = [*SHOAL, "train", "--algo", algo, "--env", env, *extra, "--print-config"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = result.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# settings:")), None)
    if result.returncode != 0 or start is None:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"shoal train --print-config exited {result.returncode}: {tail}")
    tree = yaml.safe_load("\n".join(lines[start + 1:]))
    return lines[start].removeprefix("# settings:").strip(), int(tree["run"]["total_env_steps"])


def run_train(args: argparse.Namespace, seed: int, parent: Path) -> dict[str, Any]:
    """One training run. Progress goes to our stderr as it happens (long runs should show
    life); its own wall time is measured here too, because the summary's seconds_total
    starts after Python and torch have been imported."""
    started = time.monotonic()
    result = subprocess.run(train_command(args, seed, parent), stdout=subprocess.PIPE,
                            text=True, check=False)
    row: dict[str, Any] = {"seed": seed, "command_seconds": time.monotonic() - started,
                           "exit_code": result.returncode}
    try:
        summary = last_json_line(result.stdout)
    except ValueError:
        summary = None
    if result.returncode not in (TRAINED, TARGET_MISSED) or not isinstance(summary, dict):
        row.update(dict.fromkeys(TRAIN_KEYS), error=f"shoal train exited {result.returncode}")
    else:
        row.update({key: summary.get(key) for key in TRAIN_KEYS})
    return row


def run_eval(run_dir: str, episodes: int) -> tuple[float | None, str | None]:
    """Greedy play of the final checkpoint: (mean return, error)."""
    result = subprocess.run([*SHOAL, "eval", run_dir, "--episodes", str(episodes), "--json"],
                            stdout=subprocess.PIPE, text=True, check=False)
    try:
        return float(last_json_line(result.stdout)["mean_return"]), None
    except (ValueError, KeyError, TypeError):
        return None, f"shoal eval exited {result.returncode}"


def measure_seed(args: argparse.Namespace, seed: int, root: Path) -> dict[str, Any]:
    """Train then evaluate one seed. Each seed gets a parent folder of its own: shoal names
    a run directory by algo, env and the current second, so two runs could otherwise meet."""
    row = run_train(args, seed, root / f"seed-{seed}")
    row["eval_episodes"] = args.eval_episodes
    row["eval_mean_return"] = None
    if row["run_dir"] is not None:
        row["eval_mean_return"], error = run_eval(row["run_dir"], args.eval_episodes)
        if error:
            row["error"] = error
    return row


def run_sb3(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """SB3's peer algorithm on the same task, seed and target, in a process of its own like
    shoal's."""
    peer = sb3_peer(args.algo)
    budget = args.total_env_steps
    if budget is None:  # the schedules the zoo anneals run over its budget: shoal's
        extra = ["--config", str(args.config)] if args.config is not None else []
        _, budget = resolved_run(args.algo, args.env, extra)
    command = [sys.executable, str(Path(__file__).with_name("sb3_time_to_solve.py")),
               "--algo", peer, "--env", args.env, "--seed", str(seed),
               "--target-return", str(args.target_return),
               "--window", str(args.return_window), "--total-env-steps", str(budget), "--json"]
    started = time.monotonic()
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    try:
        row = dict(last_json_line(result.stdout))
    except ValueError:
        row = {"error": f"sb3 exited {result.returncode}"}
    row["command_seconds"] = time.monotonic() - started
    return {"sb3_algo": peer, **row}


def ratio_to_sb3(row: dict[str, Any]) -> float | None:
    sb3 = row.get("sb3") or {}
    if not (row["reached"] and sb3.get("reached")):
        return None
    return float(row["seconds_from_first_step"]) / float(sb3["seconds_from_first_step"])


def fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], target: float) -> None:
    """One row per seed; the columns follow the questions asked of a run: did it get
    there, how fast in steps and seconds, and does the greedy policy hold up."""
    header = (f"{'seed':>4} {'reached':>7} {'train ret':>9} {'env steps':>10} {'updates':>8} "
              f"{'s 1st step':>10} {'s run':>7} {'s command':>9} {'eval ret':>8} "
              f"{'eval>=tgt':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        passed = None if row["eval_mean_return"] is None else row["eval_mean_return"] >= target
        print(f"{row['seed']:>4} {fmt(row['reached']):>7} {fmt(row['mean_return'], '.1f'):>9} "
              f"{fmt(row['env_steps'], ','):>10} {fmt(row['updates'], ','):>8} "
              f"{fmt(row['seconds_from_first_step'], '.1f'):>10} "
              f"{fmt(row['seconds_total'], '.1f'):>7} {row['command_seconds']:>9.1f} "
              f"{fmt(row['eval_mean_return'], '.1f'):>8} {fmt(passed):>9}"
              + (f"  ({row['error']})" if row.get("error") else ""))
        if "sb3" in row:
            sb3 = row["sb3"]
            print(f"{'sb3':>4} {fmt(sb3.get('reached')):>7} "
                  f"{fmt(sb3.get('mean_return'), '.1f'):>9} {fmt(sb3.get('env_steps'), ','):>10} "
                  f"{'':>8} {fmt(sb3.get('seconds_from_first_step'), '.1f'):>10} "
                  f"{fmt(sb3.get('seconds_total'), '.1f'):>7} {sb3['command_seconds']:>9.1f}"
                  f"   sb3 {sb3['sb3_algo']}; shoal/sb3 time from 1st step: "
                  f"{fmt(row['ratio_to_sb3'], '.2f')}"
                  + (f"  ({sb3['error']})" if sb3.get("error") else ""))


def print_footer(rows: list[dict[str, Any]], target: float) -> None:
    """Across seeds: how many solved, and the median time of those that did (the time of a
    seed that ran out of budget says nothing about solving)."""
    solved = [row for row in rows if row["reached"]]
    evals = [row["eval_mean_return"] for row in rows if row["eval_mean_return"] is not None]
    line = f"reached {target:g} in {len(solved)}/{len(rows)} seeds"
    if solved:
        line += (f"; median of those: "
                 f"{statistics.median(r['seconds_from_first_step'] for r in solved):.1f}s "
                 f"from the first env step, "
                 f"{statistics.median(r['env_steps'] for r in solved):,.0f} env steps")
    if evals:
        passed = sum(value >= target for value in evals)
        line += f"; greedy eval >= target in {passed}/{len(evals)}"
    ratios = [row["ratio_to_sb3"] for row in rows if row.get("ratio_to_sb3") is not None]
    if ratios:
        both = [row for row in rows if row["reached"] and row["sb3"].get("reached")]
        shoal_steps = [row["env_steps"] for row in both]
        sb3_steps = [row["sb3"]["env_steps"] for row in both]
        per_seed = [ours / theirs for ours, theirs in zip(shoal_steps, sb3_steps, strict=True)]
        line += (f"; shoal/sb3 over {len(ratios)} seeds: wall clock from the first env step "
                 f"median {statistics.median(ratios):.2f}, env steps median per seed "
                 f"{statistics.median(per_seed):.2f}, medians' ratio "
                 f"{statistics.median(shoal_steps) / statistics.median(sb3_steps):.2f}")
    print(line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.run_dir or Path(tempfile.mkdtemp(prefix="shoal-time-to-solve-"))
    print(f"runs under {root}", file=sys.stderr)
    rows = []
    for seed in args.seeds:
        row = measure_seed(args, seed, root)
        if args.sb3:
            row["sb3"] = run_sb3(args, seed)
            row["ratio_to_sb3"] = ratio_to_sb3(row)
        rows.append(row)
        if row["exit_code"] == BAD_ARGUMENTS:
            print("shoal train rejected its arguments; the other seeds would too",
                  file=sys.stderr)
            break
    print_table(rows, args.target_return)
    print_footer(rows, args.target_return)
    if args.json:
        print(json.dumps([{k: v for k, v in row.items() if k != "exit_code"} for row in rows]))
    return BAD_ARGUMENTS if rows[-1]["exit_code"] == BAD_ARGUMENTS else 0


if __name__ == "__main__":
    sys.exit(main())
