"""``shoal top``: rates and the verdict from two scrapes, and the live panel in a real
pseudo-terminal during a run."""

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.core import CounterMetricFamily

from shoal.launcher.rates import Rates
from shoal.launcher.run_dir import EventLog, write_prometheus_targets
from shoal.launcher.top import follow, line, verdict
from shoal.protos.exposition import MetricsServer

from ..conftest import wait_until
from .live import LIVE_TEST_TIMEOUT, START, STOP
from .test_train_local import train_command


def samples(steps: float, inserts: float, samples_: float, updates: float, busy: float,
            wait: float, blocked: float) -> dict:
    return {("shoal_actor_env_steps_total", "actor-0"): steps,
            ("shoal_actor_insert_blocked_seconds_total", "actor-0"): blocked,
            ("shoal_actor_episode_return_recent", "actor-0"): 120.0,
            ("shoal_replay_inserts_total", "replay"): inserts,
            ("shoal_replay_samples_total", "replay"): samples_,
            ("shoal_learner_updates_total", "learner"): updates,
            ("shoal_learner_update_seconds_total", "learner"): busy,
            ("shoal_learner_batch_wait_seconds_total", "learner"): wait,
            ("shoal_learner_policy_lag_versions_count", "learner"): updates * 10,
            ("shoal_learner_policy_lag_versions_sum", "learner"): updates * 30}


def test_rates_between_two_scrapes():
    rates = Rates.between(samples(0, 0, 0, 0, 0, 0, 0),
                          samples(4000, 4000, 32000, 100, 1.8, 0.1, 1.9), seconds=2.0)
    assert rates.env_steps_per_s_total == 2000 and rates.updates_per_s == 50
    assert rates.samples_per_insert == 8
    assert rates.learner_busy == pytest.approx(0.9)
    assert rates.learner_waiting == pytest.approx(0.05)
    assert rates.actors_blocked == pytest.approx(0.95)
    assert rates.policy_lag == pytest.approx(3.0)
    assert rates.recent_return == 120.0


def test_a_counter_that_went_down_was_reset():
    rates = Rates.between(samples(5000, 0, 0, 0, 0, 0, 0), samples(400, 0, 0, 0, 0, 0, 0),
                          seconds=2.0)
    assert rates.env_steps_per_s_total == 200  # a restarted actor: 400 steps in its new life


@pytest.mark.parametrize(("wait", "blocked", "expected"), [
    (1.0, 0.1, "collection is the bottleneck"),   # learner waits half the time
    (0.0, 1.8, "training is the bottleneck"),     # actors blocked 90 %
    (0.1, 0.4, "balanced"),
])
def test_verdict_names_the_side_that_bounds_the_run(wait, blocked, expected):
    rates = Rates.between(samples(0, 0, 0, 0, 0, 0, 0),
                          samples(100, 100, 800, 10, 1.0, wait, blocked), seconds=2.0)
    assert verdict(rates).startswith(expected)
    assert expected in line(rates)
    if expected.startswith("training"):  # one actor: fewer is no advice
        assert verdict(rates).endswith("with one actor, only a faster learner (a GPU) would "
                                       "go faster")


def read_until(fd: int, pattern: re.Pattern, timeout: float) -> str:
    """Terminal output (escape codes stripped) until ``pattern`` matches it."""
    seen, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536).decode(errors="replace")
            except OSError:  # the process closed the terminal
                break
            seen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", chunk)
            if pattern.search(seen):
                return seen
    pytest.fail(f"no {pattern.pattern!r} within {timeout}s in:\n{seen[-3000:]}")


def exit_code_reading(fd: int, process: subprocess.Popen, timeout: float) -> int:
    """``process``'s exit code, the terminal ``fd`` read (and dropped) meanwhile."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                os.read(fd, 65536)
            except OSError:  # the process closed the terminal
                break
    return process.wait(timeout=max(1.0, deadline - time.monotonic()))


class Stepping:
    """An actor's /metrics whose env-step counter grows by ``per_scrape`` at each scrape."""

    def __init__(self, per_scrape: float) -> None:
        self.per_scrape, self.steps = per_scrape, 0.0

    def collect(self):
        self.steps += self.per_scrape
        yield CounterMetricFamily("shoal_actor_env_steps", "env steps", value=self.steps)


def test_top_follows_the_targets_as_scale_rewrites_them_and_says_when_the_run_ended(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with EventLog(run_dir / "events.jsonl") as events:
        events.write("start")
    first, second = MetricsServer(Stepping(100)), MetricsServer(Stepping(1))
    try:
        write_prometheus_targets(run_dir, "run", {"actor-0": first.address})
        views = follow(run_dir, interval=0.01)
        assert sorted(next(views).env_steps_per_s) == ["actor-0"]
        # shoal scale 1 -> 2 rewrites the targets file: the next views scrape actor-1 too
        write_prometheus_targets(run_dir, "run", {"actor-0": first.address,
                                                  "actor-1": second.address})
        next(views)  # actor-1's first scrape: no interval to rate yet
        rates = next(views)
        assert sorted(rates.env_steps_per_s) == ["actor-0", "actor-1"]
        assert rates.env_steps_per_s["actor-1"] > 0
        with EventLog(run_dir / "events.jsonl") as events:
            events.write("summary", reached=False, interrupted=False, env_steps=12_345,
                         mean_return=81.4)
        assert next(views) == ("run run has stopped: its step budget ended it at 12,345 "
                               "env steps, mean return 81.4")
        assert next(views, None) is None  # and the view ends
        # a finished run's view is that line alone, with no scrape of processes long gone
        assert list(follow(run_dir, interval=0.01)) == [
            "run run has stopped: its step budget ended it at 12,345 env steps, mean return "
            "81.4"]
    finally:
        first.close()
        second.close()


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_top_shows_a_live_panel_with_nonzero_rates_in_a_terminal(tmp_path):
    run = subprocess.Popen(train_command(tmp_path, "--local", "--actors", "1",
                                         "--total-env-steps", "10000000"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    top = None
    master, slave = pty.openpty()
    try:
        wait_until(lambda: any((tmp_path / "runs").glob("*/prometheus_targets.json")),
                   timeout=START, what="the run's targets file", interval=0.1)
        run_dir = next((tmp_path / "runs").glob("*/prometheus_targets.json")).parent
        top = subprocess.Popen(
            [sys.executable, "-m", "shoal.launcher.cli", "top", str(run_dir),
             "--interval", "1"],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
            # as a shell starts a background job's children: Ctrl-C must still end it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
        os.close(slave)
        slave = -1
        # a whole panel has been drawn once the verdict, its last line, is on the screen
        screen = read_until(master, re.compile(r"updates/s\s+│?\s*[1-9][\d,]*[\s\S]*"
                                               r"((collection is|training is) the bottleneck"
                                               r"|balanced)"), timeout=START)
        assert "shoal top" in screen and run_dir.name in screen
        assert re.search(r"actor-0\s+│?\s*env steps/s\s+│?\s*[1-9][\d,]*", screen), screen
        top.send_signal(signal.SIGINT)
        # Read on while it ends: its last frame, written as it stops, must not wait on a
        # terminal nobody reads.
        assert exit_code_reading(master, top, timeout=STOP) == 0
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
        for process in (top, run):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=STOP)
