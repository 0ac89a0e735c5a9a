"""Chaos: a DQN CartPole run on a local Ray whose processes are killed (SIGKILL) while it
trains, against the same run undisturbed.

    python benchmarks/chaos.py [--seed 0] [--actor-every 30] [--replay-at 20] \
        [--learner-at 40] [--json]

Both runs: ``shoal train --algo dqn --env CartPole-v1 --actors 2 --target-return 475``.
In the disturbed one, seconds after its first throughput line: an actor process every
--actor-every seconds (first at 10 s, alternating), the replay service once at
--replay-at, the learner once at --learner-at. Reported: whether each run reached 475,
its wall clock, env steps and updates; per replay kill, the items the table had inserted
just before it (scraped from its /metrics) against the count its checkpoint restored
(what the kill cost the table: every item inserted since that checkpoint); per learner
kill, the updates before and the checkpoint it resumed from.

With --json the last line is {"undisturbed": {...}, "disturbed": {...}, "faults": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import live_run

from shoal.launcher import top


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--actor-every", type=float, default=30.0)
    parser.add_argument("--replay-at", type=float, default=20.0)
    parser.add_argument("--learner-at", type=float, default=40.0)
    parser.add_argument("--replay-checkpoint-every", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def current_pids(run_dir: Path) -> dict[str, int]:
    """This run's processes (not another Ray's on the machine): the placement event, then
    every restart's new process."""
    pids: dict[str, int] = {}
    for event in live_run.read_events(run_dir):
        if event["event"] == "placement":
            pids.update(event["pids"])
        elif event["event"] in ("replay_restarted", "learner_restarted"):
            pids[event["event"].split("_")[0]] = event["pid"]
        elif event["event"] == "actor_restarted":
            pids[f"actor-{event['actor']}"] = event["pid"]
    return pids


def kill(run_dir: Path, component: str, which: int = 0) -> int | None:
    pids = current_pids(run_dir)
    names = sorted(name for name in pids if name.split("-")[0] == component)
    if not names:
        return None
    pid = pids[names[which % len(names)]]
    os.kill(pid, signal.SIGKILL)
    return pid


def replay_inserted(parent: Path) -> float | None:
    """The replay service's inserted items, scraped from its /metrics just before a kill."""
    targets = top.read_targets(next(parent.glob("*/prometheus_targets.json")).parent)
    samples = top.scrape({"replay": targets["replay"]})
    return samples.get(("shoal_replay_inserts_total", "replay"))


def schedule(args: argparse.Namespace) -> list[tuple[float, str]]:
    """(seconds after the first throughput line, component), in order; actors until 600 s."""
    plan = [(args.replay_at, "replay"), (args.learner_at, "learner")]
    at = 10.0
    while at < 600:
        plan.append((at, "actor"))
        at += args.actor_every
    return sorted(plan)


def run(args: argparse.Namespace, parent: Path, chaos: bool) -> tuple[dict[str, Any],
                                                                      list[dict[str, Any]]]:
    command = [*live_run.SHOAL, "train", "--algo", "dqn", "--env", "CartPole-v1",
               "--actors", "2", "--seed", str(args.seed), "--target-return", "475",
               "--total-env-steps", "400000", "--run-dir", str(parent),
               "--replay-checkpoint-every", str(args.replay_checkpoint_every), "--json"]
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    faults: list[dict[str, Any]] = []
    done = threading.Event()

    def disturb() -> None:
        while not done.wait(0.5):
            logs = [p for p in parent.glob("*/events.jsonl") if '"throughput"' in p.read_text()]
            if logs:
                break
        else:
            return
        run_dir = logs[0].parent
        origin = time.time()
        for index, (at, component) in enumerate(schedule(args)):
            if done.wait(max(0.0, origin + at - time.time())):
                return
            inserted = replay_inserted(parent) if component == "replay" else None
            pid = kill(run_dir, component, index)
            faults.append({"component": component, "at": round(time.time() - origin, 1),
                           "time": time.time(), "pid": pid, "inserted_at_kill": inserted})

    chaos_thread = threading.Thread(target=disturb, daemon=True)
    if chaos:
        chaos_thread.start()
    stdout, _ = process.communicate(timeout=1800)
    done.set()
    summary = json.loads(stdout.strip().splitlines()[-1])
    summary["command_seconds"] = time.time() - started
    lines = live_run.read_events(Path(summary["run_dir"]))
    return summary, [describe(fault, lines) for fault in faults]


def describe(fault: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    before = [e for e in lines if e["event"] == "throughput" and e["time"] <= fault["time"]]
    last = before[-1] if before else {}
    after = {"actor": "actor_restarted", "replay": "replay_restarted",
             "learner": "learner_restarted"}[fault["component"]]
    restarted = next((e for e in lines if e["event"] == after and e["time"] > fault["time"]),
                     None)
    row = {**fault, "restarted_after_s": (None if restarted is None
                                          else round(restarted["time"] - fault["time"], 1))}
    if fault["component"] == "replay" and restarted is not None:
        row.update(inserted_at_kill=fault["inserted_at_kill"],
                   restored_inserted=restarted["inserted_items"],
                   restored_from=restarted["restored_from"])
    if fault["component"] == "learner" and restarted is not None:
        row.update(updates_at_last_poll=last.get("updates"),
                   resumed_updates=restarted["resumed_updates"])
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shoal-chaos-") as scratch:
        calm, _ = run(args, Path(scratch) / "undisturbed", chaos=False)
        rough, faults = run(args, Path(scratch) / "disturbed", chaos=True)
    print(f"{'run':>11} {'reached':>8} {'s from 1st step':>16} {'s command':>10} "
          f"{'env steps':>10} {'updates':>8}")
    for name, summary in (("undisturbed", calm), ("disturbed", rough)):
        print(f"{name:>11} {summary['reached']!s:>8} "
              f"{summary['seconds_from_first_step']:>16.1f} {summary['command_seconds']:>10.1f}"
              f" {summary['env_steps']:>10,} {summary['updates']:>8,}")
    cost = rough["seconds_from_first_step"] / calm["seconds_from_first_step"]
    print(f"wall clock of the disturbed run: {cost:.2f}x the undisturbed one's")
    for fault in faults:
        extra = ""
        if fault["component"] == "replay" and "restored_inserted" in fault:
            lost = int(fault["inserted_at_kill"] or 0) - fault["restored_inserted"]
            extra = (f"; the table had inserted {fault['inserted_at_kill'] or 0:,.0f} just "
                     f"before, its checkpoint restored {fault['restored_inserted']:,}: "
                     f"{lost:,} items lost, those inserted since that checkpoint")
        if fault["component"] == "learner" and "resumed_updates" in fault:
            extra = (f"; {fault['updates_at_last_poll']:,} updates at the last poll, resumed "
                     f"from the checkpoint at {fault['resumed_updates']:,}")
        print(f"killed {fault['component']} at {fault['at']} s: back after "
              f"{fault['restarted_after_s']} s{extra}")
    if args.json:
        print(json.dumps({"undisturbed": calm, "disturbed": rough, "faults": faults}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
