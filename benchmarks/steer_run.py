"""Steering a live run: ``shoal scale`` by hand, and ``--autoscale`` on its own.

    python benchmarks/steer_run.py scale [--counts 2 4 1] [--seconds 30] [--json]
    python benchmarks/steer_run.py autoscale --scenario starved|blocked [--seconds 150] [--json]

``scale``: one ``shoal train --algo dqn --env CartPole-v1`` on a local Ray; every
--seconds, ``shoal scale RUN_DIR --actors N`` for the next count. Per count: env steps/s,
updates/s, learner busy and actors blocked (means of the run's throughput events while
it held, skipping the first 6 s after each change), and, for a count that removed actors,
the items they handed their writers against the items the replay service acknowledged.

``autoscale``: ``shoal train ... --autoscale MIN:MAX`` for --seconds, then SIGTERM.
``starved``: DQN on CartPole with 1 env per actor and one sampled transition per inserted
one (samples_per_insert 1): the learner waits for data, so the count should rise from 1.
``blocked``: SAC on Pendulum from 4 actors, where the learner (one update per env step)
bounds the run and actors wait on insert, so the count should fall. Prints every decision
with the figures that drove it, and env steps/s and learner busy before and after each.

With --json the last line is one JSON object: {"phases": [...], "decisions": [...]}, and for
autoscale "kept": {"windows", "last_reason"} (the windows that kept the count).
Nothing is asserted: the machine is shared and noisy.
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

import live_run

SETTLE_SECONDS = 6.0  # after a change: actors starting, the table catching up

SCENARIOS: dict[str, dict[str, Any]] = {
    "starved": {"args": ["--algo", "dqn", "--env", "CartPole-v1", "--envs-per-actor", "1",
                         "--autoscale", "1:4"],
                "config": {"samples_per_insert": 1.0, "error_buffer": 256.0,
                           "batch_size": 64}},
    "blocked": {"args": ["--algo", "sac", "--env", "Pendulum-v1", "--envs-per-actor", "1",
                         "--autoscale", "1:4", "--actors", "4"],
                "config": {}},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    scale = commands.add_parser("scale")
    scale.add_argument("--counts", type=int, nargs="+", default=[2, 4, 1])
    scale.add_argument("--seconds", type=float, default=30.0, help="per count")
    auto = commands.add_parser("autoscale")
    auto.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    auto.add_argument("--seconds", type=float, default=150.0)
    for command in (scale, auto):
        command.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def start_train(parent: Path, args: list[str], config: dict[str, Any]) -> tuple[
        subprocess.Popen, Path]:
    """A ``shoal train`` that runs until stopped; returns it and its run directory."""
    command = [*live_run.SHOAL, "train", "--run-dir", str(parent), "--total-env-steps",
               str(live_run.HUGE_BUDGET), *args]
    if config:
        path = parent / "config.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        command += ["--config", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        logs = [p for p in parent.glob("*/events.jsonl") if '"throughput"' in p.read_text()]
        if logs:
            return process, logs[0].parent
        if process.poll() is not None:
            raise RuntimeError(f"shoal train exited with {process.returncode}")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("no throughput after 120 s")


STOP_GRACE = 120.0  # seconds for shoal train to stop cleanly on SIGTERM


def phase(lines: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Means of the throughput events in [start + settle, end)."""
    held = [e for e in lines if e["event"] == "throughput"
            and start + SETTLE_SECONDS <= e["time"] < end]

    def mean(key: str) -> float | None:
        values = [e[key] for e in held if e.get(key) is not None]
        return statistics.fmean(values) if values else None

    return {"seconds": round(end - start, 1), "samples": len(held),
            "env_steps_per_s": mean("env_steps_per_s"), "updates_per_s": mean("updates_per_s"),
            "learner_busy": mean("learner_busy"), "actors_blocked": mean("actors_blocked")}


def run_scale(counts: list[int], seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shoal-steer-") as scratch:
        process, run_dir = start_train(
            Path(scratch), ["--algo", "dqn", "--env", "CartPole-v1", "--actors", str(counts[0]),
                            "--max-actors", str(max(counts))], {})
        try:
            changes: list[dict[str, Any]] = [
                {"actors": counts[0], "time": time.time(), "command": None}]
            time.sleep(seconds)
            for count in counts[1:]:
                result = subprocess.run(
                    [*live_run.SHOAL, "scale", str(run_dir), "--actors", str(count)],
                    capture_output=True, text=True, timeout=300)
                changes.append({"actors": count, "time": time.time(),
                                "command": (result.stdout or result.stderr).strip()})
                time.sleep(seconds)
            end = time.time()
        finally:
            live_run.terminate(process, STOP_GRACE)
        lines = live_run.read_events(run_dir)
    scales = [e for e in lines if e["event"] == "scale"]
    phases = []
    for i, change in enumerate(changes):
        until = changes[i + 1]["time"] if i + 1 < len(changes) else end
        row = {"actors": change["actors"], **phase(lines, change["time"], until),
               "shoal_scale": change["command"]}
        if i > 0 and i - 1 < len(scales):
            row["removed_items_sent"] = scales[i - 1]["removed_items_sent"]
            row["removed_items_stored"] = scales[i - 1]["removed_items_stored"]
        phases.append(row)
    return {"phases": phases, "decisions": []}


def run_autoscale(scenario: str, seconds: float) -> dict[str, Any]:
    setup = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory(prefix="shoal-steer-") as scratch:
        process, run_dir = start_train(Path(scratch), setup["args"], setup["config"])
        started = time.time()
        try:
            time.sleep(seconds)
        finally:
            live_run.terminate(process, STOP_GRACE)
        lines = live_run.read_events(run_dir)
    decisions = [e for e in lines if e["event"] == "autoscale" and e.get("changed", True)]
    edges = [started, *(d["time"] for d in decisions), time.time()]
    first = next(e for e in lines if e["event"] == "start")["settings"]["run"]["actors"]
    counts = [first, *(d["actors"] for d in decisions)]
    phases = [{"actors": count, **phase(lines, edges[i], edges[i + 1])}
              for i, count in enumerate(counts)]
    kept = [e for e in lines if e["event"] == "autoscale" and not e.get("changed", True)]
    return {"phases": phases, "decisions": decisions,
            "kept": {"windows": len(kept), "last_reason": kept[-1]["reason"] if kept else None}}


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    print(f"{'actors':>6} {'held s':>7} {'env steps/s':>12} {'updates/s':>10} "
          f"{'learner busy':>13} {'actors blocked':>15}  removed: sent / stored")
    for row in report["phases"]:
        removed = ("" if "removed_items_sent" not in row or not row["removed_items_sent"]
                   else f"{row['removed_items_sent']:,} / {row['removed_items_stored']:,}")
        print(f"{row['actors']:>6} {row['seconds']:>7.0f} {fmt(row['env_steps_per_s'], ',.0f'):>12}"
              f" {fmt(row['updates_per_s'], ',.1f'):>10} {fmt(row['learner_busy'], '.0%'):>13}"
              f" {fmt(row['actors_blocked'], '.0%'):>15}  {removed}")
    for d in report["decisions"]:
        print(f"autoscale {d['previous']} -> {d['actors']}: {d['reason']} "
              f"(window {d['window_seconds']} s: env steps/s {d['env_steps_per_s']:,.0f}, "
              f"updates/s {d['updates_per_s']}, samples/insert {d['samples_per_insert']})")
    if report.get("kept", {}).get("windows"):
        print(f"kept the count in {report['kept']['windows']} windows; the last said: "
              f"{report['kept']['last_reason']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = (run_scale(args.counts, args.seconds) if args.mode == "scale"
              else run_autoscale(args.scenario, args.seconds))
    print_report(report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
