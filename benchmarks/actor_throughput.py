"""Actor throughput: env steps/s and updates/s of training per actor count (and, on-policy,
per collection mode), and what the actor-learner machinery costs an actor compared with a
bare env + policy loop.

    python benchmarks/actor_throughput.py [--algo dqn] [--actors 1 2 4] [--envs-per-actor 8] \
        [--max-policy-lag K ...] [--seconds 20] [--local] [--config FILE] [--raw-steps 2000] \
        [--json]

(a) Per actor count, a real ``shoal train --algo ALGO`` with no target and a step budget too
large to matter, interrupted (SIGINT, as Ctrl-C) once its events.jsonl throughput lines
span --seconds after the first. The first line is dropped (start-up, and the replay warm-up
when actors run free of the rate limiter); rates are the cumulative counters' differences
between the first and last line over their timestamps.

For ppo and a2c, each actor count runs synchronously and then once per --max-policy-lag K
(asynchronous: actors collect up to K + 1 rollouts per weight version, the learner leaves
out rollouts more than K versions old); the rows then also say the mean policy lag of
what the learner trained on and the fraction of rollouts it left out.

(b) In the same invocation, before training: the same vector env stepped by the same
policy network in one process, with no adder, replay or transport (policy.act + envs.step),
against (a)'s per-actor env steps/s with 1 actor (added when --actors lacks it).

The replay table's rate limiter holds samples_per_insert (DQNConfig) sampled transitions
per inserted one, so with the defaults actors mostly wait for the learner ("actors wait")
and the ratio measures the learner more than transport; a --config with samples_per_insert
well below 1 lets the actor run and shows what transport costs.

With --json the last line is one JSON object: envs_per_actor; raw_env_steps_per_s (b, bare
loop); shoal_actor_env_steps_per_s (b, the actor of the 1-actor run); ratio (shoal / raw);
runs (a): one object per actor count (and mode) with actors, max_policy_lag (null:
synchronous or off-policy), seconds (measured span),
env_steps_per_s, env_steps_per_s_per_actor, updates_per_s, actor_wait_fraction (actor time
blocked on the rate limiter), learner_wait_fraction (learner time waiting for a batch),
policy_lag (mean, versions), stale_dropped_fraction (of the items the learner received);
null when unmeasured. Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shoal.launcher.exit_codes import INTERRUPTED, TARGET_MISSED, TRAINED

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]  # the `shoal` entry point
HUGE_BUDGET = 10**12        # env steps: the benchmark, not the budget, ends a run
START_UP_SECONDS = 90.0     # give up on a run with no throughput line by then
INTERRUPT_GRACE = 30.0      # seconds for the command to tear down after SIGINT
ON_POLICY = ("ppo", "a2c")  # the algorithms with a synchronous and an asynchronous mode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="dqn", help="dqn, ppo or a2c")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--max-policy-lag", type=int, nargs="*", default=[], metavar="K",
                        help="ppo/a2c: also an asynchronous run per K, beside the synchronous")
    parser.add_argument("--envs-per-actor", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measured span of each training run, after its first report")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--local", action="store_true", help="passed through to shoal train")
    parser.add_argument("--config", type=Path,
                        help="algorithm settings YAML, for shoal train and the raw loop's policy")
    parser.add_argument("--raw-steps", type=int, default=2000,
                        help="vector steps per timed repetition of the raw loop")
    parser.add_argument("--run-dir", type=Path,
                        help="keep the runs under this folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="end with a JSON object")
    return parser.parse_args(argv)


# ----------------------------------------------------------------- (b) the bare loop


def algorithm_config(algo: str, path: Path | None) -> Any:
    """The same settings shoal train gets, so the raw loop acts with the same network."""
    import yaml

    from shoal.launcher.config import resolve

    values = yaml.safe_load(path.read_text()) if path else {}
    return resolve({"algo": algo, "env": "CartPole-v1" if algo != "sac" else "Pendulum-v1",
                    "algorithm": values}, check_learner=False).algorithm


def raw_env_steps_per_s(algo: str, env_id: str, num_envs: int, config: Any, vector_steps: int,
                        repeats: int = 3) -> float:
    """policy.act + envs.step and nothing else: the ceiling an actor could reach. One torch
    thread, as each shoal actor uses; the median of a few repetitions, after a warm-up."""
    import torch

    from shoal.actors.envs import env_spec, make_vector_env
    from shoal.algorithms.registry import ALGORITHMS

    torch.set_num_threads(1)
    envs = make_vector_env(env_id, num_envs, seed=0)
    policy = ALGORITHMS[algo].make_policy(config, env_spec(envs), 0, 1, 0)
    obs, _ = envs.reset(seed=0)
    rates = []
    try:
        for repeat in range(repeats + 1):
            steps = vector_steps if repeat else max(1, vector_steps // 10)  # 0: warm-up
            started = time.perf_counter()
            for _ in range(steps):
                obs, *_ = envs.step(policy.act(obs).actions)
            if repeat:
                rates.append(steps * num_envs / (time.perf_counter() - started))
    finally:
        envs.close()
    return statistics.median(rates)


# ------------------------------------------------------------------ (a) shoal train


def train_command(args: argparse.Namespace, actors: int, lag: int | None,
                  parent: Path) -> list[str]:
    command = [*SHOAL, "train", "--algo", args.algo, "--env", args.env,
               "--actors", str(actors), "--envs-per-actor", str(args.envs_per_actor),
               "--total-env-steps", str(HUGE_BUDGET), "--run-dir", str(parent)]
    if lag is not None:
        command += ["--max-policy-lag", str(lag)]
    if args.config is not None:
        command += ["--config", str(args.config)]
    if args.local:
        command.append("--local")
    return command


def throughput_lines(parent: Path) -> list[dict[str, Any]]:
    """The run's throughput events so far. The run directory is named by shoal (algo, env,
    time), so it is found as the one folder under a parent of our own."""
    lines = []
    for path in parent.glob("*/events.jsonl"):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line being written right now
                continue
            if event.get("event") == "throughput":
                lines.append(event)
    return lines


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C first, so the launcher tears its components down (and a Ray launch its
    actors); harder signals only if it does not exit."""
    for sig, grace in ((signal.SIGINT, INTERRUPT_GRACE), (signal.SIGTERM, 10.0)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            print(f"shoal train did not exit {grace:.0f}s after {sig.name}", file=sys.stderr)
    process.kill()
    process.wait()


def watch_run(args: argparse.Namespace, actors: int, lag: int | None,
              parent: Path) -> list[dict[str, Any]]:
    """Runs shoal train until its throughput lines span --seconds after the first, then
    interrupts it. SIGINT is restored to its default in the child: a shell that starts
    this script in the background leaves SIGINT ignored, and Python would inherit that."""
    parent.mkdir(parents=True)
    log = parent / "train.log"  # its progress lines; shown only if it fails
    with log.open("w") as output:
        process = subprocess.Popen(
            train_command(args, actors, lag, parent), stdout=output, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = time.monotonic()
    lines: list[dict[str, Any]] = []
    try:
        while process.poll() is None:
            time.sleep(0.5)
            lines = throughput_lines(parent)
            if lines and lines[-1]["time"] - lines[0]["time"] >= args.seconds:
                break
            if not lines and time.monotonic() - started > START_UP_SECONDS:
                print(f"no throughput line after {START_UP_SECONDS:.0f}s", file=sys.stderr)
                break
    finally:
        stop(process)
    if process.returncode not in (TRAINED, TARGET_MISSED, -signal.SIGINT, INTERRUPTED):
        tail = "\n".join(log.read_text().splitlines()[-10:])
        print(f"shoal train ({actors} actors) exited {process.returncode}:\n{tail}",
              file=sys.stderr)
    return throughput_lines(parent)


def steady_state(lines: list[dict[str, Any]], actors: int, lag: int | None) -> dict[str, Any]:
    """Rates between the first and the last throughput line (counters are cumulative, so
    this is exact over the span and leaves out the start-up the first line includes)."""
    keys = ("env_steps", "updates", "insert_blocked_seconds", "learner_wait_seconds",
            "learner_samples", "stale_dropped")
    rates: dict[str, float | None] = dict.fromkeys(keys)
    span = lines[-1]["time"] - lines[0]["time"] if len(lines) >= 2 else 0.0
    for key in keys:
        if span > 0 and key in lines[0] and key in lines[-1]:
            rates[key] = (lines[-1][key] - lines[0][key]) / span
    steps, blocked = rates["env_steps"], rates["insert_blocked_seconds"]
    trained, dropped = rates["learner_samples"], rates["stale_dropped"]
    lags = [line["policy_lag"] for line in lines[1:] if line.get("policy_lag") is not None]
    return {"actors": actors, "max_policy_lag": lag, "seconds": span or None,
            "env_steps_per_s": steps,
            "env_steps_per_s_per_actor": None if steps is None else steps / actors,
            "updates_per_s": rates["updates"],
            # a wait is counted when it ends, so a short span can show a bit over 100 %
            "actor_wait_fraction": None if blocked is None else min(1.0, blocked / actors),
            "learner_wait_fraction": rates["learner_wait_seconds"],
            "policy_lag": statistics.fmean(lags) if lags else None,
            "stale_dropped_fraction": (dropped / (dropped + trained)
                                       if dropped is not None and trained else None)}


# ------------------------------------------------------------------------ the tables


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def mode(lag: int | None, algo: str) -> str:
    if algo not in ON_POLICY:
        return "-"
    return "sync" if lag is None else f"async {lag}"


def print_runs(rows: list[dict[str, Any]], algo: str, envs_per_actor: int) -> None:
    print(f"(a) shoal train --algo {algo}, {envs_per_actor} envs per actor, steady state")
    header = (f"{'actors':>6} {'mode':>8} {'env steps/s':>11} {'per actor':>9} "
              f"{'updates/s':>9} {'actors wait':>11} {'learner waits':>13} "
              f"{'policy lag':>10} {'dropped':>7} {'seconds':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['actors']:>6} {mode(row['max_policy_lag'], algo):>8} "
              f"{fmt(row['env_steps_per_s'], ',.0f'):>11} "
              f"{fmt(row['env_steps_per_s_per_actor'], ',.0f'):>9} "
              f"{fmt(row['updates_per_s'], ',.0f'):>9} "
              f"{fmt(row['actor_wait_fraction'], '.0%'):>11} "
              f"{fmt(row['learner_wait_fraction'], '.0%'):>13} "
              f"{fmt(row['policy_lag'], '.2f'):>10} "
              f"{fmt(row['stale_dropped_fraction'], '.0%'):>7} "
              f"{fmt(row['seconds'], '.1f'):>7}")


def print_overhead(raw: float, shoal: float | None, algo: str, envs_per_actor: int) -> None:
    print(f"\n(b) one actor, {envs_per_actor} envs: what the actor-learner machinery costs")
    print(f"{'raw vector env + ' + algo + ' policy, one process':<48} "
          f"{raw:>10,.0f} env steps/s")
    print(f"{'shoal actor, with replay service and learner':<48} "
          f"{fmt(shoal, ',.0f'):>10} env steps/s")
    print(f"{'ratio shoal / raw':<48} {fmt(shoal / raw if shoal else None, '.3f'):>10}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = sorted(set(args.actors) | {1})
    lags: list[int | None] = [None]
    if args.algo in ON_POLICY:
        lags += args.max_policy_lag
    raw = raw_env_steps_per_s(args.algo, args.env, args.envs_per_actor,
                              algorithm_config(args.algo, args.config), args.raw_steps)
    rows = []
    with tempfile.TemporaryDirectory(prefix="shoal-actor-throughput-") as temporary:
        root = args.run_dir or Path(temporary)
        for actors in counts:
            for lag in lags:
                name = f"actors-{actors}" + ("" if lag is None else f"-lag-{lag}")
                lines = watch_run(args, actors, lag, root / name)
                rows.append(steady_state(lines, actors, lag))
    print_runs(rows, args.algo, args.envs_per_actor)
    shoal = next(row["env_steps_per_s_per_actor"] for row in rows
                 if row["actors"] == 1 and row["max_policy_lag"] is None)
    print_overhead(raw, shoal, args.algo, args.envs_per_actor)
    if args.json:
        print(json.dumps({"envs_per_actor": args.envs_per_actor, "raw_env_steps_per_s": raw,
                          "shoal_actor_env_steps_per_s": shoal,
                          "ratio": shoal / raw if shoal else None, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
