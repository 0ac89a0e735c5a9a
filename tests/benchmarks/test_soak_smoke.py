"""The soak and chaos benchmarks' own logic, without a live run (a real one takes minutes):
the process sampling, the flatness verdict, the event-log tail, and a fault thread that
counts a kill it could not make as not injected instead of dying."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import their sibling live_run

import chaos  # noqa: E402
import live_run  # noqa: E402
import soak  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")


def test_fit_is_the_slope_per_minute() -> None:
    assert soak.fit([(t, 5.0 + 0.1 * t) for t in range(0, 300, 10)]) == pytest.approx(6.0)
    assert soak.fit([(0.0, 1.0)]) == 0.0


def test_a_swing_is_flat_and_a_trend_is_not() -> None:
    # the replay service's fds follow the actor count (1-3 connections): a swing, no trend
    cycle = [(t, (t // 60) % 3) for t in range(0, 1800, 10)]
    swing = soak.Proc(1, "0", "replay", "replay", [(t, 300.0 + k, 40 + 6 * k) for t, k in cycle])
    growing = soak.Proc(2, "0", "learner", "learner",
                        [(t, 300.0 + t / 30, 40 + t // 120) for t in range(0, 1800, 10)])
    flat = soak.steadiness(swing, warmup=300)
    grows = soak.steadiness(growing, warmup=300)
    assert flat is not None and flat["flat"]
    assert grows is not None and not grows["rss_mb"]["flat"] and not grows["fds"]["flat"]
    assert soak.steadiness(swing, warmup=1790) is None  # too few samples after the warm-up


def test_classify_by_ray_titles() -> None:
    assert soak.classify(7, 7, "python -m shoal.launcher.cli train") == ("driver", "shoal train")
    assert soak.classify(8, 7, "ray::ActorComponent.poll") == ("actor", "actor")
    assert soak.classify(9, 7, "ray::IDLE") == ("ray", "ray::IDLE")
    assert soak.classify(9, 7, "/x/python -u /x/ray/_private/log_monitor.py --a") == (
        "ray", "log_monitor.py")


def test_tracker_samples_a_tree_and_sees_a_child_go() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        tracker = soak.Tracker(os.getpid(), None)
        assert tracker.sample(0.0) == set()
        pids = {key[0] for key in tracker.procs}
        assert {os.getpid(), child.pid} <= pids
        mine = next(p for p in tracker.procs.values() if p.pid == os.getpid())
        assert mine.role == "driver" and mine.points[0][1] > 1 and mine.points[0][2] >= 3
    finally:
        child.kill()
        child.wait()
    gone = tracker.sample(10.0)
    assert child.pid in {key[0] for key in gone}
    assert soak.read_process(child.pid) is None


def test_event_tail_leaves_a_half_written_line_for_the_next_read(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    tail = live_run.EventTail(log)
    assert tail.read() == []
    log.write_text(json.dumps({"event": "a"}) + "\n" + '{"event": "b"')
    assert [e["event"] for e in tail.read()] == ["a"]
    with log.open("a") as out:
        out.write(', "x": 1}\n')
    assert tail.read() == [{"event": "b", "x": 1}]
    assert tail.read() == []


def test_a_kill_that_finds_no_process_is_not_injected(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"event": "placement", "time": time.time(), "pids": {"actor-0": gone.pid}},
        {"event": "throughput", "time": time.time(), "env_steps": 100, "updates": 5}]))
    train = subprocess.Popen(["sleep", "2"])
    plan = [chaos.Fault("actor", "env_steps", 50), chaos.Fault("learner", "env_steps", 60),
            chaos.Fault("replay", "env_steps", 10**9)]
    disturber = chaos.Disturber(plan, tmp_path, train)
    disturber.start()
    train.wait()
    disturber.stop()
    assert disturber.injected == []
    assert [m["reason"] for m in disturber.missed] == [
        "the process was already gone", "no such process in the run", "the run ended first"]
