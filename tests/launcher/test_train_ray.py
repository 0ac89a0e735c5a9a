"""``shoal train`` on a real local Ray, steered as an operator would: one actor process is
killed (Ray restarts it), ``shoal scale`` adds an actor and then removes two, and SIGTERM
ends the run cleanly."""

import json
import os
import re
import signal

import pytest

from .live import CONDITION, LIVE_TEST_TIMEOUT, LiveTrain, ray_workers, run_metric
from .test_cli import shoal
from .test_train_local import train_command

SCALE = 240  # `shoal scale`: its start, and the run's up to 130 s to apply the request


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_train_on_local_ray_survives_a_killed_actor_and_scales(tmp_path):
    command = train_command(tmp_path, "--actors", "2", "--max-actors", "3",
                            "--total-env-steps", "1000000000")
    with LiveTrain(tmp_path, command) as run:
        def actor_pids() -> list[int]:
            """This run's actor processes (not those of another run on the machine)."""
            return ray_workers(run.process.pid, "ActorComponent")

        def sending(instance: str) -> bool:
            return run_metric(run_dir, instance, "shoal_actor_items_sent_total") > 0

        run.wait_training()
        run_dir = run.run_dir()
        # the local Ray starts quietly: its token auth stays on, its start-up lines do not show
        assert "Token authentication is enabled" not in run.stderr, run.stderr[-2000:]
        assert "Started a local Ray instance" not in run.stderr, run.stderr[-2000:]
        run.wait_for(lambda: len(actor_pids()) == 2, CONDITION, "two actor processes")
        targets = run_dir / "prometheus_targets.json"
        before = json.loads(targets.read_text())
        os.kill(actor_pids()[0], signal.SIGKILL)
        run.wait_for(lambda: run.latest("actor_restarted"), CONDITION,
                     "Ray to restart the killed actor")
        # the restarted actor's new /metrics port
        run.wait_for(lambda: json.loads(targets.read_text()) != before, CONDITION,
                     "the targets to follow the new life")
        assert len(json.loads(targets.read_text())) == len(before) == 5  # with the launcher

        grown = shoal("scale", str(run_dir), "--actors", "3", timeout=SCALE)
        assert grown.returncode == 0, grown.stderr
        # Ray starts the third one in the background: pending, it may be, for a moment.
        assert re.match(r"actors 2 -> 3( \(1 pending[^)]*\))? at ", grown.stdout), grown.stdout
        run.wait_for(lambda: len(actor_pids()) == 3, CONDITION, "a third actor process")
        assert "scale: actors 2 -> 3 (shoal scale)" in run.stderr  # said on the run's console
        run.wait_for(lambda: len(json.loads(targets.read_text())) == 6, CONDITION,
                     "the third actor's /metrics in the targets")

        # The two to be removed (the highest indices) have items to hand over.
        run.wait_for(lambda: sending("actor-1") and sending("actor-2"), CONDITION,
                     "actor-1 and actor-2 to send items")
        shrunk = shoal("scale", str(run_dir), "--actors", "1", timeout=SCALE)
        assert shrunk.returncode == 0, shrunk.stderr
        counts = re.search(r"flushed ([\d,]+) items on leaving \(over their lives: ([\d,]+) "
                           r"sent, ([\d,]+) stored\)", shrunk.stdout)
        assert counts is not None, shrunk.stdout
        flushed, sent, stored = (int(count.replace(",", "")) for count in counts.groups())
        assert sent == stored > 0 and 0 <= flushed <= stored
        run.wait_for(lambda: len(actor_pids()) == 1, CONDITION, "two actors to leave")
        assert sorted(t["labels"]["shoal_instance"] for t in json.loads(targets.read_text())) == [
            "actor-0", "launcher", "learner", "replay"]
        too_many = shoal("scale", str(run_dir), "--actors", "4", timeout=SCALE)
        assert too_many.returncode == 2 and "actors: expected 1..3, got 4" in too_many.stderr

        summary = run.stop()
        events = run.events()
    assert summary["updates"] > 0
    assert events[0]["launch"] == "ray"
    scales = [(e["previous"], e["actors"]) for e in events if e["event"] == "scale"]
    assert scales == [(2, 3), (3, 1)]
    assert not (run_dir / "control.json").exists()  # the endpoint went with the run
    assert os.path.exists(os.path.join(summary["run_dir"], "learner", "learner.pt"))
