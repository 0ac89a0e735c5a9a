"""``shoal replay-server``: the replay service as a plain process.

Thin on purpose: it reads the config, starts a ReplayServer, and turns SIGTERM/SIGINT into
"write a last checkpoint (if a directory is configured), then exit 0".
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from shoal.protos.exposition import MetricsServer
from shoal.protos.transport import write_atomically
from shoal.replay_service.config import load_server_config
from shoal.replay_service.metrics import ReplayCollector
from shoal.replay_service.server import ReplayServer

log = logging.getLogger("shoal.replay_server")


def serve(
    config_path: Path,
    *,
    token: str,
    host: str,
    port: int,
    checkpoint_dir: Path | None,
    address_file: Path | None,
    metrics_port: int = 0,
) -> int:
    config = load_server_config(config_path)
    server = ReplayServer(
        config.tables,
        token=token,
        host=host,
        port=port,
        checkpoint_dir=checkpoint_dir or config.checkpoint_dir,
        checkpoint_every_seconds=config.checkpoint_every_seconds,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    metrics = MetricsServer(ReplayCollector(
        lambda: [table.stats() for table in server.tables.values()], config_path.stem,
        "replay"), host, metrics_port)
    if server.restored_from is not None:
        sizes = {name: table.size for name, table in server.tables.items()}
        log.info("restored from %s: %s", server.restored_from, sizes)
    if address_file is not None:
        write_atomically(address_file, server.address)
    log.info("replay server listening on %s, tables %s, metrics at http://%s/metrics",
             server.address, sorted(server.tables), metrics.address)
    stop.wait()
    metrics.close()
    path = server.stop(grace=2.0, checkpoint=True)
    if path is not None:
        log.info("checkpointed to %s", path)
    log.info("stopped")
    return 0


def configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")


class SpawnedReplayServer:
    """``shoal replay-server`` in a child process, for the demo, benchmarks and tests.

    ``with SpawnedReplayServer(config) as server: ReplayClient(server.address, server.token)``;
    leaving the block sends SIGTERM (so the server checkpoints) and waits for the exit.
    """

    def __init__(
        self, config_path: Path, workdir: Path, *, checkpoint_dir: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        import subprocess
        import time

        workdir.mkdir(parents=True, exist_ok=True)
        self.token_file = workdir / "token"
        self.address_file = workdir / "address"
        self.log_file = workdir / "replay-server.log"
        self.address_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "shoal.launcher.cli", "replay-server",
                   "--config", str(config_path), "--token-file", str(self.token_file),
                   "--address-file", str(self.address_file)]
        if checkpoint_dir is not None:
            command += ["--checkpoint-dir", str(checkpoint_dir)]
        with open(self.log_file, "ab") as log_handle:
            self.process = subprocess.Popen(command, stdout=log_handle, stderr=log_handle)
        deadline = time.monotonic() + startup_timeout
        while not self.address_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"replay server exited with {self.process.returncode}: "
                                   f"{self.log_file.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.process.kill()
                raise TimeoutError(f"replay server not listening after {startup_timeout}s")
            time.sleep(0.05)
        self.address = self.address_file.read_text().strip()
        self.token = self.token_file.read_text().strip()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def __enter__(self) -> SpawnedReplayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.terminate()
        except Exception:
            self.process.kill()
            raise
