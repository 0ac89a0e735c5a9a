"""The replay load benchmark at its smallest: a real replay process, writer and sampler
processes, two steps of a few seconds; what it reports is measured, and nothing it started
outlives it."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import their sibling sample_path

import replay_load  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

STEP_KEYS = {"writers", "offered_items_per_s", "held_items_per_s", "held_fraction",
             "ack_p50_ms", "ack_p99_ms", "samples_per_s", "asked_samples_per_s", "server_cpu",
             "server_rss_mb", "client_cpu", "client_cpu_max", "sampler_cpu", "machine_cpu",
             "send_late_p99_ms", "sample_late_p99_ms", "update_p99_ms", "unsent_messages",
             "errors", "first_errors"}


def test_two_steps_report_what_the_server_held(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_load.main(["--items", "cartpole", "--writers", "1", "4", "--seconds", "2",
                             "--warmup", "1", "--client-processes", "1", "--table-size",
                             "5000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (run,) = out["runs"]
    assert run["items"] == "cartpole" and run["message_items"] == 256
    assert {"broke_at", "broke_by", "server_pid", "message_bytes"} <= set(run)
    assert [step["writers"] for step in run["steps"]] in ([1, 4], [1])  # [1]: it broke there
    for step in run["steps"]:
        assert set(step) == STEP_KEYS
        assert step["errors"] == 0, step["first_errors"]
        assert step["offered_items_per_s"] > 0 and step["held_items_per_s"] > 0
        assert 0 < step["ack_p50_ms"] <= step["ack_p99_ms"]
        assert step["samples_per_s"] > 0 and step["asked_samples_per_s"] == 25 * 256
        assert step["server_cpu"] > 0 and step["server_rss_mb"] > 0
    # one writer offers what it was set to, 5,000 items/s, and the server holds it all:
    # messages sent with ack_later (3 in 4) count once a later acknowledgement covers them
    first = run["steps"][0]
    assert first["offered_items_per_s"] == pytest.approx(5000, rel=0.15)
    assert first["held_fraction"] >= 0.9
    assert (run["broke_at"] is None) == (replay_load.broken_by(run["steps"][-1]) is None)
    with pytest.raises(ProcessLookupError):  # the replay process is gone, and reaped
        os.kill(run["server_pid"], 0)
    assert multiprocessing.active_children() == []


def test_a_step_breaks_by_held_before_p99() -> None:
    held = {"held_fraction": 0.96, "ack_p99_ms": 20.0}
    assert replay_load.broken_by(held) is None
    assert replay_load.broken_by({**held, "held_fraction": 0.9, "ack_p99_ms": 500.0}) == "held"
    assert replay_load.broken_by({**held, "ack_p99_ms": 101.0}) == "p99"
    assert replay_load.broken_by({"held_fraction": None, "ack_p99_ms": None}) == "held"


def test_more_writers_than_the_server_has_threads_is_refused() -> None:
    with pytest.raises(SystemExit):
        replay_load.parse_args(["--writers", "251"])
    assert replay_load.parse_args(["--writers", "300", "--server-threads", "512"]).writers == [300]
