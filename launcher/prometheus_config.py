"""A Prometheus configuration for shoal runs under any parent folders (``--run-dir``s):
``shoal prometheus-config --run-dir runs --run-dir /data/runs > prometheus.yml``. The one in
``deploy/prometheus/`` is this for ``./runs``, relative to itself.

``shoal train`` keeps a copy of each running run's targets in
``PARENT/prometheus_targets/<run>.json`` (file_sd globs only a path's last element), so one
glob per parent finds every run there, started later ones included. Ray's own processes
are a second job only when asked (``--ray``): its discovery file exists only where Ray's
metrics agent runs, and Prometheus logs an error every refresh while a file_sd file is
missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shoal.launcher.run_dir import TARGETS_INDEX

RAY_DISCOVERY = ["/tmp/ray/prom_metrics_service_discovery.json",
                 "/tmp/ray/session_latest/metrics/prom_metrics_service_discovery.json"]


def prometheus_config(run_parents: Sequence[Path | str], ray: bool = False,
                      scrape_interval: str = "5s") -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [{
        "job_name": "shoal",
        # shoal's run and instance labels (actor-0, learner, replay) win over the target's
        # instance (host:port), so queries read {run=..., instance="actor-0"}
        "honor_labels": True,
        "file_sd_configs": [{"files": [f"{parent}/{TARGETS_INDEX}/*.json"
                                       for parent in run_parents],
                             "refresh_interval": "10s"}],
    }]
    if ray:
        jobs.append({"job_name": "ray",
                     "file_sd_configs": [{"files": RAY_DISCOVERY, "refresh_interval": "10s"}]})
    return {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": jobs}
