"""Chaos: a DQN CartPole run on a local Ray whose processes are killed (SIGKILL) while it
trains, against the same run undisturbed.

    python benchmarks/chaos.py [--seed 0] [--actor-every-steps 8000] [--actor-kills 3] \
        [--replay-at-steps 10000] [--learner-at-steps 25000] [--replay-checkpoint-every 10] \
        [--actor-every S] [--replay-at S] [--learner-at S] [--json]

Both runs: ``shoal train --algo dqn --env CartPole-v1 --actors 2 --target-return 475``.
The disturbed one loses --actor-kills actor processes (alternating; the first at half of
--actor-every-steps env steps, then one every --actor-every-steps), its replay service once
at --replay-at-steps and its learner once at --learner-at-steps.

Faults are scheduled by progress: the run's env steps (every life of every actor, so they
never go back), read from its throughput lines as it writes them. A schedule in seconds
was what a faster machine outran: the runs now solve before the first kill would come.
The defaults all fall in the first ~25k env steps, about half of what an undisturbed run
takes to solve. --actor-every/--replay-at/--learner-at (seconds after the first throughput
line; actors first at 10 s) replace that component's step schedule. Faults come one at a
time: the next waits until the last one's process is back (its restart event), so each
kill finds the current process and each recovery is measured on its own.

A fault that could not be injected (the run ended first, or the process was already gone
when its kill came) makes the benchmark fail (exit 1, the faults missed on stderr): a
disturbed run that was not disturbed is not a result.

Reported: whether each run reached 475, its wall clock, env steps and updates; per replay
kill, the items the table had inserted just before it (scraped from its /metrics) against
the count its checkpoint restored (what the kill cost the table: every item inserted since
that checkpoint); per learner kill, the updates before and the checkpoint it resumed from.

With --json the last line is {"undisturbed": {...}, "disturbed": {...}, "faults": [...],
"missed": [...], "scheduled": N, "ok": bool}; "faults" holds the injected ones.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import live_run

from shoal.launcher import rates

RESTART_WAIT_SECONDS = 90.0  # for a killed process's restart event before the next fault
RESTART_EVENTS = {"actor": "actor_restarted", "replay": "replay_restarted",
                  "learner": "learner_restarted"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--actor-every-steps", type=int, default=8_000)
    parser.add_argument("--actor-kills", type=int, default=3)
    parser.add_argument("--replay-at-steps", type=int, default=10_000)
    parser.add_argument("--learner-at-steps", type=int, default=25_000)
    parser.add_argument("--actor-every", type=float, metavar="SECONDS",
                        help="actor kills by time instead: first at 10 s, then every SECONDS")
    parser.add_argument("--replay-at", type=float, metavar="SECONDS")
    parser.add_argument("--learner-at", type=float, metavar="SECONDS")
    parser.add_argument("--replay-checkpoint-every", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Fault:
    """One scheduled kill: ``component`` once the run's ``axis`` (env_steps, or seconds
    after its first throughput line) reaches ``at``; ``which`` picks among actors."""

    component: str
    axis: str
    at: float
    which: int = 0

    def __str__(self) -> str:
        unit = "env steps" if self.axis == "env_steps" else "s"
        return f"{self.component} at {self.at:,.0f} {unit}"


def schedule(args: argparse.Namespace) -> list[Fault]:
    """Every fault of the disturbed run, in the order they come due."""
    faults = []
    for k in range(args.actor_kills):
        if args.actor_every is None:
            faults.append(Fault("actor", "env_steps", args.actor_every_steps * (k + 0.5), k))
        else:
            faults.append(Fault("actor", "seconds", 10.0 + k * args.actor_every, k))
    for component, seconds, steps in (("replay", args.replay_at, args.replay_at_steps),
                                      ("learner", args.learner_at, args.learner_at_steps)):
        faults.append(Fault(component, "env_steps", steps) if seconds is None
                      else Fault(component, "seconds", seconds))
    return sorted(faults, key=lambda f: (f.axis, f.at))


def current_pids(events: list[dict[str, Any]]) -> dict[str, int]:
    """This run's processes (not another Ray's on the machine): the placement event, then
    every restart's new process."""
    pids: dict[str, int] = {}
    for event in events:
        if event["event"] == "placement":
            pids.update(event["pids"])
        elif event["event"] in ("replay_restarted", "learner_restarted"):
            pids[event["event"].split("_")[0]] = event["pid"]
        elif event["event"] == "actor_restarted":
            pids[f"actor-{event['actor']}"] = event["pid"]
    return pids


def replay_inserted(run_dir: Path) -> float | None:
    """The replay service's inserted items, scraped from its /metrics just before a kill;
    None when it does not answer (the run is ending)."""
    try:
        targets = rates.read_targets(run_dir)
        return rates.scrape({"replay": targets["replay"]}).get(
            ("shoal_replay_inserts_total", "replay"))
    except (OSError, KeyError, ValueError):
        return None


class Disturber:
    """The fault thread of the disturbed run: follows its event log and kills each fault's
    process when it comes due. It never raises: what it could not do is recorded in
    ``missed`` (the run ended first, the process was already gone)."""

    def __init__(self, plan: list[Fault], parent: Path, process: subprocess.Popen) -> None:
        self.plan = plan
        self.injected: list[dict[str, Any]] = []
        self.missed: list[dict[str, Any]] = []
        self._parent, self._process = parent, process
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """After the run ended: every fault not injected by then is missed."""
        self._done.set()
        self._thread.join(timeout=30)
        done = len(self.injected) + len(self.missed)
        self.missed += [{**asdict(f), "reason": "the run ended first"} for f in self.plan[done:]]

    def _run(self) -> None:
        try:
            run_dir = live_run.wait_for_run_dir(self._parent, self._process, timeout=300)
        except RuntimeError:
            return
        tail = live_run.EventTail(run_dir / "events.jsonl")
        events: list[dict[str, Any]] = []
        origin = time.time()
        for fault in self.plan:
            while True:
                events += tail.read()
                progress = [e for e in events if e["event"] == "throughput"]
                now = {"env_steps": progress[-1]["env_steps"] if progress else 0,
                       "seconds": time.time() - origin}
                if now[fault.axis] >= fault.at and self._previous_back(events):
                    break
                if self._done.wait(0.25):
                    return
            self._inject(fault, run_dir, events, origin)

    def _previous_back(self, events: list[dict[str, Any]]) -> bool:
        """Whether the last injected fault's process has restarted (or long enough has
        passed that waiting longer would only stall the schedule)."""
        if not self.injected:
            return True
        last = self.injected[-1]
        if time.time() - last["time"] > RESTART_WAIT_SECONDS:
            return True
        return any(e["event"] == RESTART_EVENTS[last["component"]] and e["time"] > last["time"]
                   for e in events)

    def _inject(self, fault: Fault, run_dir: Path, events: list[dict[str, Any]],
                origin: float) -> None:
        pids = current_pids(events)
        names = sorted(name for name in pids if name.split("-")[0] == fault.component)
        if not names:
            self.missed.append({**asdict(fault), "reason": "no such process in the run"})
            return
        name = names[fault.which % len(names)]
        progress = [e for e in events if e["event"] == "throughput"]
        inserted = replay_inserted(run_dir) if fault.component == "replay" else None
        try:
            os.kill(pids[name], signal.SIGKILL)
        except ProcessLookupError:
            self.missed.append({**asdict(fault), "pid": pids[name],
                                "reason": "the process was already gone"})
            return
        self.injected.append({
            "component": fault.component, "at": round(time.time() - origin, 1),
            "time": time.time(), "pid": pids[name], "inserted_at_kill": inserted,
            "process": name, "scheduled": str(fault),
            "env_steps_at_kill": progress[-1]["env_steps"] if progress else 0,
            "updates_at_kill": progress[-1]["updates"] if progress else 0})


def run(args: argparse.Namespace, parent: Path, chaos: bool) -> tuple[
        dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One run: its summary, the faults injected (described) and those missed."""
    command = [*live_run.SHOAL, "train", "--algo", "dqn", "--env", "CartPole-v1",
               "--actors", "2", "--seed", str(args.seed), "--target-return", "475",
               "--total-env-steps", "400000", "--run-dir", str(parent),
               "--replay-checkpoint-every", str(args.replay_checkpoint_every), "--json"]
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    disturber = Disturber(schedule(args) if chaos else [], parent, process)
    disturber.start()
    stdout, _ = process.communicate(timeout=1800)
    disturber.stop()
    summary = json.loads(stdout.strip().splitlines()[-1])
    summary["command_seconds"] = time.time() - started
    lines = live_run.read_events(Path(summary["run_dir"]))
    return summary, [describe(f, lines) for f in disturber.injected], disturber.missed


def describe(fault: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    before = [e for e in lines if e["event"] == "throughput" and e["time"] <= fault["time"]]
    last = before[-1] if before else {}
    actor = (int(fault["process"].split("-")[1]) if fault["component"] == "actor" else None)
    restarted = next((e for e in lines if e["event"] == RESTART_EVENTS[fault["component"]]
                      and e["time"] > fault["time"] and e.get("actor") == actor), None)
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


def print_report(calm: dict[str, Any], rough: dict[str, Any],
                 faults: list[dict[str, Any]]) -> None:
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
        print(f"killed {fault['process']} at {fault['at']} s "
              f"({fault['env_steps_at_kill']:,} env steps): back after "
              f"{fault['restarted_after_s']} s{extra}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    planned = len(schedule(args))
    with tempfile.TemporaryDirectory(prefix="shoal-chaos-") as scratch:
        calm, _, _ = run(args, Path(scratch) / "undisturbed", chaos=False)
        rough, faults, missed = run(args, Path(scratch) / "disturbed", chaos=True)
    print_report(calm, rough, faults)
    ok = planned > 0 and not missed
    if args.json:
        print(json.dumps({"undisturbed": calm, "disturbed": rough, "faults": faults,
                          "missed": missed, "scheduled": planned, "ok": ok}))
    if not ok:
        print(f"chaos: FAILED: {len(faults)} of {planned} scheduled faults injected, so the "
              f"disturbed run is no result. Not injected:", file=sys.stderr)
        for miss in missed:
            fault = Fault(miss["component"], miss["axis"], miss["at"], miss["which"])
            print(f"  {fault}: {miss['reason']}", file=sys.stderr)
        if any(miss["reason"] == "the run ended first" for miss in missed):
            print(f"  (the disturbed run ended at {rough['env_steps']:,} env steps: schedule "
                  f"the faults earlier)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
