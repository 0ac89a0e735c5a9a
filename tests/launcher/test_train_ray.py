"""``shoal train`` on a real local Ray, steered as an operator would: one actor process is
killed (Ray restarts it), ``shoal scale`` adds an actor and then removes two, and SIGTERM
ends the run cleanly."""

import json
import os
import re
import signal
import subprocess

import pytest

from ..conftest import wait_until
from .test_cli import shoal
from .test_train_local import train_command


def actor_pids() -> list[int]:
    """Processes of Ray actors running an ActorComponent (Ray names its workers so)."""
    found = subprocess.run(["pgrep", "-f", "ray::ActorComponent"], capture_output=True,
                           text=True)
    return [int(pid) for pid in found.stdout.split()]


def events_of(runs) -> list[dict]:
    return [json.loads(line) for line in next(runs.glob("*/events.jsonl")).read_text().splitlines()]


@pytest.mark.timeout(400)
def test_train_on_local_ray_survives_a_killed_actor_and_scales(tmp_path):
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        train_command(tmp_path, "--actors", "2", "--max-actors", "3",
                      "--total-env-steps", "10000000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running() -> bool:
            logs = list(runs.glob("*/events.jsonl"))
            return bool(logs) and '"throughput"' in logs[0].read_text()

        wait_until(running, timeout=180, what="the run to report throughput")
        run_dir = next(runs.glob("dqn-*"))
        wait_until(lambda: len(actor_pids()) == 2, timeout=60, what="two actor processes")
        targets = run_dir / "prometheus_targets.json"
        before = json.loads(targets.read_text())
        os.kill(actor_pids()[0], signal.SIGKILL)
        wait_until(lambda: any(e["event"] == "actor_restarted" for e in events_of(runs)),
                   timeout=120, what="Ray to restart the killed actor")
        # the restarted actor's new /metrics port
        wait_until(lambda: json.loads(targets.read_text()) != before, timeout=30,
                   what="the targets to follow the new life")
        assert len(json.loads(targets.read_text())) == len(before) == 5  # with the launcher

        grown = shoal("scale", str(run_dir), "--actors", "3")
        assert grown.returncode == 0, grown.stderr
        assert grown.stdout.startswith("actors 2 -> 3 at ")
        wait_until(lambda: len(actor_pids()) == 3, timeout=60, what="a third actor process")
        assert len(json.loads(targets.read_text())) == 6

        shrunk = shoal("scale", str(run_dir), "--actors", "1")
        assert shrunk.returncode == 0, shrunk.stderr
        counts = re.search(r"handed ([\d,]+) items to their writers, ([\d,]+) stored",
                           shrunk.stdout)
        assert counts is not None, shrunk.stdout
        sent, stored = counts.groups()
        assert sent == stored and int(sent.replace(",", "")) > 0
        wait_until(lambda: len(actor_pids()) == 1, timeout=60, what="two actors to leave")
        assert sorted(t["labels"]["shoal_instance"] for t in json.loads(targets.read_text())) == [
            "actor-0", "launcher", "learner", "replay"]
        too_many = shoal("scale", str(run_dir), "--actors", "4")
        assert too_many.returncode == 2 and "actors: expected 1..3, got 4" in too_many.stderr

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["updates"] > 0
    events = events_of(runs)
    assert events[0]["launch"] == "ray"
    scales = [(e["previous"], e["actors"]) for e in events if e["event"] == "scale"]
    assert scales == [(2, 3), (3, 1)]
    assert not (run_dir / "control.json").exists()  # the endpoint went with the run
    assert os.path.exists(os.path.join(summary["run_dir"], "learner", "learner.pt"))
