"""Soak: a long DQN CartPole run on a local Ray, scaled and disturbed, watched for leaks.

    python benchmarks/soak.py --minutes M [--seed 0] [--samples FILE] [--json]

One ``shoal train --algo dqn --env CartPole-v1 --actors 2 --max-actors 3`` with no target
return and a step budget no run reaches, so only this benchmark ends it (SIGTERM after M
minutes, counted from its first throughput line). Meanwhile:

- every minute ``shoal scale RUN_DIR --actors N``, N cycling 3, 1, 2 (one count down in
  every three removes two actors, whose items sent and stored must match);
- every two minutes (at 1:30, 3:30, ...: between two scales) one actor process killed with
  SIGKILL, the longest-lived; Ray starts it again;
- every 10 s, each process of the run: RSS and open file descriptors (psutil when
  installed, else /proc/PID/status VmRSS and /proc/PID/fd). The run's processes are the
  ``shoal train`` process (the driver) and its descendants: the local Ray it started and
  that Ray's workers, so no other run's process is ever sampled or killed. Roles come from
  Ray's process titles (ray::ReplayComponent, ...); actor indices from events.jsonl's
  placement and actor_restarted events (an actor `shoal scale` added is "added": the scale
  event does not name its process).

After a warm-up (the first 5 minutes, or 1/6 of the run when that is shorter), per
long-lived process (driver, replay, learner; Ray's own processes for information): the
least-squares slope of RSS (MB/min) and fds (fds/min), max/min, and the drift, the slope
times the window, as a share of the mean. "Flat within +-10 %" here means |drift| <= 10 %:
a leak moves the trend, while the swing that follows the actor count (each actor holds
connections to the replay service and the learner) does not. max/min is printed beside it.
Actors are listed by process with their lifetime.

Checks (exit 1 if any fails): driver, replay and learner flat in RSS and fds; nothing lost
by removed actors (items sent == items stored, from the scale events); every scale and
kill done; no restart but the ones this benchmark caused; env steps and updates still
growing in the last minute; a clean stop (exit 130 after SIGTERM, a summary event, no
process of the run left behind).

With --json the last line is one JSON object: minutes, warmup_minutes, long_lived (rows),
actors (rows), ray (rows), scales, kills, checks ({name: {ok, detail}}), summary, ok.
--samples FILE writes every sample (JSON lines: time, pid, role, name, rss_mb, fds).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import live_run

SAMPLE_SECONDS = 10.0
SCALE_SECONDS = 60.0
KILL_SECONDS = 120.0
KILL_OFFSET_SECONDS = 30.0     # a kill comes half-way between two scales
START_ACTORS = 2
COUNTS = (3, 1, 2)             # the actor counts `shoal scale` cycles through
FLAT = 0.10                    # the drift allowed over the window, as a share of the mean
STOP_GRACE = 180.0
LAST_MINUTE = 60.0
LONG_LIVED = ("driver", "replay", "learner")
TITLES = {"ray::ReplayComponent": "replay", "ray::LearnerComponent": "learner",
          "ray::ActorComponent": "actor"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=Path, help="write every sample here (JSON lines)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


# -- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    rss_mb: float
    fds: int
    title: str     # the command line as the process shows it (Ray sets ray::Class)
    started: str   # the kernel's start time: with the pid, one process's identity


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    try:
        import psutil

        return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess: the root is gone
        return []
    if not Path(f"/proc/{root}").exists():
        return []
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def read_process(pid: int) -> Reading | None:
    """RSS, open fds, title and start time of ``pid``; None once it is gone."""
    try:
        import psutil

        try:
            p = psutil.Process(pid)
            with p.oneshot():
                return Reading(p.memory_info().rss / 2**20, p.num_fds(), " ".join(p.cmdline()),
                               str(p.create_time()))
        except psutil.Error:
            return None
    except ImportError:
        pass
    proc = Path(f"/proc/{pid}")
    try:
        status = (proc / "status").read_text()
        rss_kb = next((int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:")), 0)
        fds = len(os.listdir(proc / "fd"))
        title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        started = (proc / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError, ValueError):
        return None
    return Reading(rss_kb / 1024, fds, title.strip(), started)


def classify(pid: int, driver: int, title: str) -> tuple[str, str]:
    """(role, name): driver, replay, learner, actor, or ray (one of Ray's own processes,
    named by its executable or title)."""
    if pid == driver:
        return "driver", "shoal train"
    for prefix, role in TITLES.items():
        if title.startswith(prefix):
            return role, role
    words = title.split()
    if not words:
        return "ray", "?"
    if words[0].startswith("ray::"):
        return "ray", words[0]
    script = next((w for w in words[1:] if w.endswith(".py")), None)
    return "ray", Path(script or words[0]).name


@dataclass
class Proc:
    """One process of the run over its life, as the samples saw it."""

    pid: int
    started: str
    role: str
    name: str
    points: list[tuple[float, float, int]] = field(default_factory=list)  # (t, MB, fds)
    ended: str = "alive at the end"
    gone_at: float | None = None

    @property
    def first_seen(self) -> float:
        return self.points[0][0]

    @property
    def last_seen(self) -> float:
        return self.points[-1][0]


Key = tuple[int, str, str]  # pid, start time, role


class Tracker:
    """Samples the run's process tree and keeps one ``Proc`` per process and role it has
    seen. The role is part of the key because Ray hands a new actor to a worker it
    started beforehand: that process is ray::IDLE first, an actor once its constructor
    runs, and its life as an actor begins then."""

    def __init__(self, driver: int, samples: Path | None) -> None:
        self.driver = driver
        self.procs: dict[Key, Proc] = {}
        self._alive: set[Key] = set()
        self._samples = samples.open("w") if samples else None

    def sample(self, t: float) -> set[Key]:
        """One sample of every process of the run; returns those gone since the last."""
        seen = set()
        for pid in process_tree(self.driver):
            reading = read_process(pid)
            if reading is None:
                continue
            role, name = classify(pid, self.driver, reading.title)
            key = (pid, reading.started, role)
            if key not in self.procs:
                self.procs[key] = Proc(pid, reading.started, role, name)
            proc = self.procs[key]
            proc.points.append((t, reading.rss_mb, reading.fds))
            seen.add(key)
            if self._samples:
                self._samples.write(json.dumps({"t": round(t, 1), "pid": pid, "role": proc.role,
                                                "name": proc.name, "rss_mb": round(
                                                    reading.rss_mb, 2), "fds": reading.fds})
                                    + "\n")
        gone, self._alive = self._alive - seen, seen
        for key in gone:  # a kill here has set it already, to the moment of the kill
            if self.procs[key].gone_at is None:
                self.procs[key].gone_at = t
        return gone

    def alive(self, role: str) -> list[Proc]:
        return [self.procs[key] for key in self._alive if self.procs[key].role == role]

    def still_running(self) -> list[Proc]:
        """Processes of the last sample that still exist (same pid, same start time)."""
        left = []
        for key in self._alive:
            reading = read_process(key[0])
            if reading is not None and reading.started == key[1]:
                left.append(self.procs[key])
        return left

    def close(self) -> None:
        if self._samples:
            self._samples.close()


# -- the run -----------------------------------------------------------------------------


@dataclass
class Soak:
    """Drives the run: scales, kills and samples on their schedules until ``seconds``."""

    process: subprocess.Popen
    run_dir: Path
    tracker: Tracker
    seconds: float
    origin: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    scales: list[dict[str, Any]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        tail = live_run.EventTail(self.run_dir / "events.jsonl")
        due = {"sample": 0.0, "scale": SCALE_SECONDS,
               "kill": KILL_SECONDS - KILL_OFFSET_SECONDS}
        pending: tuple[subprocess.Popen, dict[str, Any]] | None = None
        while (now := time.time() - self.origin) < self.seconds:
            if self.process.poll() is not None:
                self.failures.append(f"shoal train exited at {now:.0f} s with "
                                     f"{self.process.returncode}")
                return
            self.events += [e for e in tail.read() if e["event"] != "episode"]
            if now >= due["sample"]:
                self._note_gone(self.tracker.sample(now))
                due["sample"] += SAMPLE_SECONDS
            if pending is not None and pending[0].poll() is not None:
                self._finish_scale(*pending)
                pending = None
            if pending is None and now >= due["scale"]:
                count = COUNTS[len(self.scales) % len(COUNTS)]
                previous = self.scales[-1]["actors"] if self.scales else START_ACTORS
                row = {"at": round(now, 1), "previous": previous, "actors": count}
                self.scales.append(row)
                pending = (subprocess.Popen(
                    [*live_run.SHOAL, "scale", str(self.run_dir), "--actors", str(count)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), row)
                due["scale"] += SCALE_SECONDS
            if pending is None and now >= due["kill"]:  # never while actors are leaving
                self._kill_an_actor(now)
                due["kill"] += KILL_SECONDS
            time.sleep(max(0.05, min(0.5, min(due.values()) - now)))
        if pending is not None:
            pending[0].wait(timeout=300)
            self._finish_scale(*pending)
        self._note_gone(self.tracker.sample(time.time() - self.origin))
        self.events += [e for e in tail.read() if e["event"] != "episode"]

    def _finish_scale(self, command: subprocess.Popen, row: dict[str, Any]) -> None:
        output = (command.stdout.read() if command.stdout else "").strip()
        row.update(rc=command.returncode, output=output,
                   done=round(time.time() - self.origin, 1))
        if command.returncode != 0:
            self.failures.append(f"shoal scale --actors {row['actors']} at {row['at']} s "
                                 f"exited {command.returncode}: {output}")

    def _kill_an_actor(self, now: float) -> None:
        """SIGKILL to the longest-lived actor, only if it is still in the run's tree."""
        self._note_gone(self.tracker.sample(now))  # the tree as it is now, not 10 s ago
        actors = sorted(self.tracker.alive("actor"), key=lambda p: p.first_seen)
        row: dict[str, Any] = {"at": round(now, 1), "pid": None, "time": time.time()}
        self.kills.append(row)
        if not actors:
            row["missed"] = "no actor process in the run"
            return
        victim = actors[0]
        row["pid"] = victim.pid
        try:
            os.kill(victim.pid, signal.SIGKILL)
        except ProcessLookupError:
            row["missed"] = "the process was already gone"
            return
        victim.ended, victim.gone_at = "killed", now

    def _note_gone(self, gone: set[Key]) -> None:
        """Says why each vanished process went: killed here, removed by a scale down, or
        neither (it died of itself)."""
        for key in gone:
            proc = self.tracker.procs[key]
            if proc.ended == "killed":
                continue
            removed = any(s["actors"] < s["previous"] and s["at"] <= (proc.gone_at or 0)
                          and s.get("done", float("inf")) >= proc.last_seen
                          for s in self.scales)
            proc.ended = "removed" if proc.role == "actor" and removed else "exited"


# -- analysis ----------------------------------------------------------------------------


def fit(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if var == 0 else 60.0 * sum((t - mt) * (v - mv) for t, v in points) / var


def steadiness(proc: Proc, warmup: float) -> dict[str, Any] | None:
    """Slope, max/min and drift of RSS and fds over the samples after the warm-up."""
    after = [p for p in proc.points if p[0] >= warmup]
    if len(after) < 3:
        return None
    window = (after[-1][0] - after[0][0]) / 60.0
    row: dict[str, Any] = {"role": proc.role, "name": proc.name, "pid": proc.pid,
                           "samples": len(after), "window_min": round(window, 2)}
    for key, index in (("rss_mb", 1), ("fds", 2)):
        values = [p[index] for p in after]
        slope = fit([(p[0], p[index]) for p in after])
        mean = sum(values) / len(values)
        drift = slope * window / mean if mean else 0.0
        row[key] = {"first": values[0], "last": values[-1], "min": min(values),
                    "max": max(values), "slope_per_min": slope, "drift": drift,
                    "max_over_min": max(values) / min(values) if min(values) else None,
                    "flat": abs(drift) <= FLAT}
    row["flat"] = row["rss_mb"]["flat"] and row["fds"]["flat"]
    return row


def actor_rows(procs: list[Proc], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Actors by process: index (when an event names it), lifetime, RSS and fds."""
    index = {}
    for event in events:
        if event["event"] == "placement":
            index.update({pid: name for name, pid in event["pids"].items()})
        elif event["event"] == "actor_restarted":
            index[event["pid"]] = f"actor-{event['actor']}"
    rows = []
    for proc in sorted(procs, key=lambda p: p.first_seen):
        end = proc.gone_at if proc.gone_at is not None else proc.last_seen
        # an actor `shoal scale` added: no event names its process (see the docstring)
        rows.append({"pid": proc.pid, "actor": index.get(proc.pid, "added"),
                     "born_s": round(proc.first_seen), "gone_s": round(end),
                     "lifetime_min": round((end - proc.first_seen) / 60, 1), "ended": proc.ended,
                     "rss_mb_first": round(proc.points[0][1], 1),
                     "rss_mb_max": round(max(p[1] for p in proc.points), 1),
                     "fds_last": proc.points[-1][2]})
    return rows


def still_training(events: list[dict[str, Any]], end_time: float) -> tuple[bool, str]:
    """Whether env steps and updates grew over the run's last minute."""
    last = [e for e in events if e["event"] == "throughput" and e["time"] >= end_time
            - LAST_MINUTE and e["time"] <= end_time]
    if len(last) < 2:
        return False, f"{len(last)} throughput lines in the last minute"
    steps = last[-1]["env_steps"] - last[0]["env_steps"]
    updates = last[-1]["updates"] - last[0]["updates"]
    return steps > 0 and updates > 0, (f"+{steps:,} env steps, +{updates:,} updates in the "
                                       f"last {last[-1]['time'] - last[0]['time']:.0f} s")


def check(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": bool(ok), "detail": detail}


def judge(soak: Soak, long_lived: list[dict[str, Any]], stop: dict[str, Any]) -> dict[
        str, dict[str, Any]]:
    events = soak.events
    checks: dict[str, dict[str, Any]] = {}
    shoal = [row for row in long_lived if row["role"] in LONG_LIVED]
    roles = sorted(row["role"] for row in shoal)
    checks["flat"] = check(roles == sorted(LONG_LIVED) and all(row["flat"] for row in shoal),
                           "; ".join(f"{row['role']} {row['pid']}: RSS drift "
                                     f"{row['rss_mb']['drift']:+.1%}, fds drift "
                                     f"{row['fds']['drift']:+.1%}" for row in shoal)
                           or "no long-lived process sampled after the warm-up")
    downs = [e for e in events if e["event"] == "scale" and e["actors"] < e["previous"]]
    sent = sum(e["removed_items_sent"] for e in downs)
    stored = sum(e["removed_items_stored"] for e in downs)
    checks["nothing_lost"] = check(all(e["removed_items_sent"] == e["removed_items_stored"]
                                       for e in downs),
                                   f"{len(downs)} scale-downs: removed actors sent {sent:,} "
                                   f"items, {stored:,} stored")
    done = [s for s in soak.scales if s.get("rc") == 0]
    hit = [k for k in soak.kills if "missed" not in k]
    checks["faults_done"] = check(len(done) == len(soak.scales) and len(hit) == len(soak.kills)
                                  and bool(soak.kills),
                                  f"{len(done)} of {len(soak.scales)} scales, {len(hit)} of "
                                  f"{len(soak.kills)} kills")
    restarts = [e for e in events if e["event"].endswith("_restarted")]
    unexpected = [e for e in restarts if e["event"] != "actor_restarted"]
    checks["only_caused_restarts"] = check(
        not unexpected and len(restarts) <= len(hit),
        f"{len(restarts)} restarts ({len(unexpected)} of replay/learner) for {len(hit)} kills")
    ok, detail = still_training(events, stop["stopped_at"])
    checks["still_training"] = check(ok, detail)
    checks["clean_stop"] = check(stop["rc"] == 130 and stop["summary"] and not stop["left"],
                                 f"exit {stop['rc']} {stop['seconds']:.0f} s after SIGTERM, "
                                 f"summary {'written' if stop['summary'] else 'missing'}, "
                                 f"{len(stop['left'])} processes left {stop['left']}")
    checks["no_failures"] = check(not soak.failures, "; ".join(soak.failures) or "none")
    return checks


# -- report ------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    print(f"soak: {report['minutes']:g} min, warm-up {report['warmup_minutes']:g} min "
          f"excluded; flat = |drift| <= {FLAT:.0%}, drift = slope x window / mean")
    print(f"{'role':>8} {'pid':>7} {'name':>18} {'RSS MB first->last':>19} {'MB/min':>7} "
          f"{'max/min':>7} {'drift':>7} {'fds':>9} {'fds/min':>7} {'max/min':>7} "
          f"{'drift':>7}  verdict")
    for row in report["long_lived"] + report["ray"]:
        r, f = row["rss_mb"], row["fds"]
        verdict = ("flat" if row["flat"] else "GROWS") + (
            "" if row["role"] in LONG_LIVED else " (info)")
        print(f"{row['role']:>8} {row['pid']:>7} {row['name'][:18]:>18} "
              f"{r['first']:>8.1f} ->{r['last']:>8.1f} {r['slope_per_min']:>+7.2f} "
              f"{r['max_over_min'] or 0:>7.3f} {r['drift']:>+7.1%} "
              f"{f['first']:>4}->{f['last']:<4} {f['slope_per_min']:>+7.2f} "
              f"{f['max_over_min'] or 0:>7.3f} {f['drift']:>+7.1%}  {verdict}")
    print(f"{'actor':>9} {'pid':>7} {'born s':>7} {'gone s':>7} {'life min':>8} "
          f"{'RSS MB first':>12} {'max':>7} {'fds':>4}  ended")
    for row in report["actors"]:
        print(f"{row['actor']:>9} {row['pid']:>7} {row['born_s']:>7} {row['gone_s']:>7} "
              f"{row['lifetime_min']:>8.1f} {row['rss_mb_first']:>12.1f} "
              f"{row['rss_mb_max']:>7.1f} {row['fds_last']:>4}  {row['ended']}")
    for kill in report["kills"]:
        outcome = kill.get("missed", f"back after {kill.get('back_after_s')} s")
        print(f"killed actor {kill['pid']} at {kill['at']:.0f} s: {outcome}")
    for scale in report["scales"]:
        print(f"scale at {scale['at']:.0f} s to {scale['actors']}: "
              f"{scale.get('output') or scale.get('rc')}")
    for name, result in report["checks"].items():
        print(f"{'PASS' if result['ok'] else 'FAIL'} {name}: {result['detail']}")
    print(f"verdict: {'PASS' if report['ok'] else 'FAIL'}")


# -- main --------------------------------------------------------------------------------


def stop_run(process: subprocess.Popen, soak: Soak) -> dict[str, Any]:
    """SIGTERM, then how it stopped: exit code, seconds, summary, processes left over."""
    stopped_at = time.time()
    live_run.terminate(process, STOP_GRACE)
    seconds = time.time() - stopped_at
    left: list[Proc] = []
    for _ in range(20):  # Ray's shutdown ends its processes; give them 10 s
        left = soak.tracker.still_running()
        if not left:
            break
        time.sleep(0.5)
    summary = [e for e in live_run.read_events(soak.run_dir, "summary")]
    return {"rc": process.returncode, "seconds": seconds, "stopped_at": stopped_at,
            "summary": summary[-1] if summary else None,
            "left": [f"{p.name} {p.pid}" for p in left]}


def analyse(soak: Soak, minutes: float, stop: dict[str, Any]) -> dict[str, Any]:
    warmup = min(5.0, minutes / 6) * 60
    procs = list(soak.tracker.procs.values())
    rows = [row for proc in procs if proc.role != "actor"
            and (row := steadiness(proc, warmup)) is not None]
    for kill in soak.kills:
        back = next((e for e in soak.events if e["event"] == "actor_restarted"
                     and e["time"] > kill["time"]), None)
        kill["back_after_s"] = None if back is None else round(back["time"] - kill["time"], 1)
    long_lived = sorted((r for r in rows if r["role"] in LONG_LIVED),
                        key=lambda r: LONG_LIVED.index(r["role"]))
    # Ray's own: only those that lived through the window (idle workers come and go)
    ray = sorted((r for r in rows if r["role"] == "ray"
                  and r["window_min"] >= 0.9 * (soak.seconds - warmup) / 60),
                 key=lambda r: r["name"])
    report = {"minutes": minutes, "warmup_minutes": warmup / 60, "flat_tolerance": FLAT,
              "long_lived": long_lived, "ray": ray,
              "actors": actor_rows([p for p in procs if p.role == "actor"], soak.events),
              "scales": soak.scales, "kills": soak.kills, "summary": stop["summary"],
              "stop": {k: v for k, v in stop.items() if k != "summary"}}
    report["checks"] = judge(soak, long_lived, stop)
    report["ok"] = all(c["ok"] for c in report["checks"].values())
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shoal-soak-") as scratch:
        command = [*live_run.SHOAL, "train", "--algo", "dqn", "--env", "CartPole-v1",
                   "--actors", str(START_ACTORS), "--max-actors", str(max(COUNTS)),
                   "--seed", str(args.seed),
                   "--total-env-steps", str(live_run.HUGE_BUDGET), "--run-dir", scratch]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        tracker = Tracker(process.pid, args.samples)
        try:
            run_dir = live_run.wait_for_run_dir(Path(scratch), process, timeout=300)
            soak = Soak(process, run_dir, tracker, args.minutes * 60)
            soak.run()
        except BaseException:
            live_run.terminate(process, STOP_GRACE)
            tracker.close()
            raise
        stop = stop_run(process, soak)
        tracker.close()
        report = analyse(soak, args.minutes, stop)
    print_report(report)
    if args.json:
        print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
