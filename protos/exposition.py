"""The Prometheus endpoint every shoal process serves, and the labels its series carry.

Each room's collector sits beside its room (``actors/metrics.py``, ``learner/metrics.py``,
``replay_service/metrics.py``, ``launcher/metrics.py``) and reads the stats its component
keeps anyway.

Collectors run at scrape time, so the step loop and the update pay nothing for them: an
actor counts its steps in ``ActorStats`` whether or not anyone scrapes. Names follow
Prometheus conventions, ``shoal_<component>_<what>_<unit>`` (counters end in ``_total``,
times are seconds); every series carries ``run`` (the run directory's name) and
``instance`` (``actor-0``, ``learner``, ``replay``), never an unbounded value.

Each component serves its own registry on its own port (``MetricsServer``), so a run's
processes are scraped alike whether they are Ray actors, plain processes or threads of one
``--local`` process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class Families:
    """Builds metric families that all carry the run and instance labels: every series of
    a shoal process is told apart by them, and by nothing unbounded."""

    def __init__(self, run: str, instance: str) -> None:
        self.values = [run, instance]

    def counter(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=["run", "instance"])
        family.add_metric(self.values, value)
        return family

    def gauge(self, name: str, doc: str, value: float,
              extra: dict[str, str] | None = None) -> GaugeMetricFamily:
        extra = extra or {}
        family = GaugeMetricFamily(name, doc, labels=["run", "instance", *extra])
        family.add_metric([*self.values, *extra.values()], value)
        return family


class MetricsServer:
    """``/metrics`` of one collector on ``host:port`` (0: any free port, then ``port``)."""

    def __init__(self, collector: Collector, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host, self.port = host, self._server.server_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
