"""A stock Prometheus, configured by ``shoal prometheus-config`` for the run's --run-dir,
finds a running ``shoal train`` through its file_sd targets and sees env steps and updates
go up."""

import functools
import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import yaml

from ..conftest import wait_until
from .live import CONDITION, LIVE_TEST_TIMEOUT, START, STOP
from .test_train_local import train_command

PROMETHEUS = shutil.which("prometheus") or ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def query(port: int, promql: str) -> float:
    """The value of an instant query's first series, 0 when there is none yet."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
    except OSError:  # not listening yet
        return 0.0
    results = answer["data"]["result"]
    return float(results[0]["value"][1]) if results else 0.0


@pytest.mark.skipif(not PROMETHEUS, reason="prometheus is not installed (make test installs "
                    "Debian's package when apt-get can)")
@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_prometheus_scrapes_a_run_through_its_file_sd_targets(tmp_path):
    # for runs under a --run-dir of the test's (not ./runs), with a 1 s scrape so the test
    # waits seconds, not minutes
    written = subprocess.run([sys.executable, "-m", "shoal.launcher.cli", "prometheus-config",
                              "--run-dir", str(tmp_path / "runs")],
                             capture_output=True, text=True, timeout=STOP, check=True).stdout
    config = yaml.safe_load(written)
    assert [job["job_name"] for job in config["scrape_configs"]] == ["shoal"]  # no ray job
    config["global"]["scrape_interval"] = "1s"
    deploy = tmp_path / "deploy" / "prometheus"
    deploy.mkdir(parents=True)
    (deploy / "prometheus.yml").write_text(yaml.safe_dump(config))
    run = subprocess.Popen(train_command(tmp_path, "--local", "--actors", "1",
                                         "--total-env-steps", "10000000"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = free_port()
    prometheus: subprocess.Popen | None = None
    try:
        wait_until(lambda: any((tmp_path / "runs" / "prometheus_targets").glob("*.json"))
                   or run.poll() is not None, timeout=START, what="the run's targets file",
                   interval=0.1)
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        prometheus = server = subprocess.Popen(
            [PROMETHEUS, f"--config.file={deploy / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))

        def answers(promql: str) -> bool:
            return query(port, promql) > 0 or server.poll() is not None

        for promql in ("sum(rate(shoal_actor_env_steps_total[10s]))",
                       "sum(rate(shoal_learner_updates_total[10s]))"):
            wait_until(functools.partial(answers, promql), timeout=CONDITION,
                       what=f"{promql} > 0 in Prometheus", interval=0.2)
            assert server.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        # replay, learner, actor-0 and the launcher (its autoscaling metrics)
        assert query(port, 'count(up{job="shoal"} == 1)') == 4
        assert query(port, 'sum(shoal_launcher_actors)') == 1
        # honor_labels: shoal's own instance label, not the scrape address
        assert query(port, 'count(shoal_actor_env_steps_total{instance="actor-0"})') == 1
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=STOP)
        assert not any((tmp_path / "runs" / "prometheus_targets").glob("*.json"))
    finally:
        for process in (prometheus, run):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=STOP)
