"""A Ray cluster on this machine started as a user starts one: ``ray start`` processes, a
head and any number of further nodes (each its own raylet, on ports of its own), with the
HOME they start from holding a Ray token, so that ``ray start`` turns token
authentication on, as it does after any local ``ray.init()``. Stopped by the process
groups it started, never by a ``ray stop`` that would end every cluster on the machine.
Used by tests/launcher/test_ray_cluster.py and benchmarks/join_cluster.py."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def ephemeral_ports_start() -> int:
    """The first port the kernel hands out for port 0 (Linux: 32768 unless tuned)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32_768


_WORKER_BLOCKS = itertools.count(secrets.randbelow(50))
"""Each node's 100 worker ports, a block of their own: blocks below the kernel's ephemeral
range, which every other port of every node comes from (``free_ports``). A range inside it
collided: Ray refused a node whose GCS or agent had been given a port of its worker range
("worker_ports is trying to use a port number ... used by other components")."""


def worker_port_range() -> tuple[int, int]:
    top = ephemeral_ports_start()
    blocks = max(1, (top - 10_000) // 100)  # 10000 .. the ephemeral start, 100 at a time
    low = 10_000 + (next(_WORKER_BLOCKS) % blocks) * 100
    return low, low + 99


def node_ports() -> list[str]:
    """Every port a node listens on, its own: several raylets share this machine."""
    manager, objects, listen, grpc, env_agent, metrics = free_ports(6)
    low, high = worker_port_range()
    return ["--node-manager-port", str(manager), "--object-manager-port", str(objects),
            "--dashboard-agent-listen-port", str(listen),
            "--dashboard-agent-grpc-port", str(grpc), "--runtime-env-agent-port",
            str(env_agent), "--metrics-export-port", str(metrics),
            "--min-worker-port", str(low), "--max-worker-port", str(high)]


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


class RayNode:
    """``ray start --block``: the command stays in the foreground as a process group
    leader, its Ray processes bound to it; stopped through that group."""

    def __init__(self, args: list[str], cpus: int, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address", "127.0.0.1",
                 "--num-cpus", str(cpus), "--num-gpus", "0",
                 "--object-store-memory", str(100 * 2**20), "--disable-usage-stats",
                 *node_ports(), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)

    def wait_started(self, timeout: float) -> None:
        wait_for(lambda: self.process.poll() is not None
                 or "Ray runtime started" in self.log.read_text(), timeout,
                 f"ray start ({self.log.name})")
        if self.process.poll() is not None:
            raise RuntimeError(f"ray start ended ({self.process.returncode}):\n"
                               f"{self.log.read_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        """Whether the ``ray start`` process ended within ``timeout``."""
        try:
            self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        return True


def stop_nodes(nodes: list[RayNode], timeout: float = 5) -> None:
    """SIGTERM to every node's process group at once, SIGKILL to what is left after
    ``timeout``: only the processes these nodes started. A node holds nothing to keep, and
    Ray's graceful exit of a node takes about 30 s."""
    for node in nodes:
        node.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for node in nodes:
        if not node.wait(deadline - time.monotonic()):
            node.signal(signal.SIGKILL)
            node.wait(30)
    for node in nodes:  # what the group still holds (a worker the raylet left behind)
        node.signal(signal.SIGKILL)


def _ask_gcs(address: str, token: str, service: str, method: str) -> Any:
    """One call to the GCS with ``token`` in the header Ray reads; None if refused."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = getattr(gcs_service_pb2_grpc, f"{service}Stub")(channel)
        request = getattr(gcs_service_pb2, f"{method}Request")()
        try:
            return getattr(stub, method)(request, timeout=10,
                                         metadata=[("authorization", f"Bearer {token}")])
        except grpc.RpcError:
            return None


def alive_nodes(address: str, token: str) -> int:
    """The GCS's count of live nodes (0 when it refuses ``token``)."""
    reply = _ask_gcs(address, token, "NodeInfoGcsService", "GetAllNodeInfo")
    return 0 if reply is None else sum(1 for node in reply.node_info_list
                                       if node.state == 0)  # ALIVE


def free_cpus(address: str, token: str) -> float:
    """The CPUs no actor holds, over every node: a run's actors are released a moment
    after its driver has gone."""
    reply = _ask_gcs(address, token, "NodeResourceInfoGcsService", "GetAllAvailableResources")
    return 0.0 if reply is None else sum(node.resources_available.get("CPU", 0.0)
                                         for node in reply.resources_list)


@dataclass
class LocalCluster:
    address: str
    token: str
    home: Path           # the HOME the nodes started from: .ray/auth_token holds the token
    nodes: list[RayNode]

    def wait_idle(self, cpus: float, timeout: float) -> None:
        """Until every CPU is free again (the actors of a run that just ended are released
        a moment after it)."""
        wait_for(lambda: free_cpus(self.address, self.token) >= cpus, timeout,
                 f"{cpus:g} free CPUs on the cluster")

    def env(self, home: Path | None = None, **extra: str) -> dict[str, str]:
        """A user's shell on this machine: HOME with (or without) the token, no Ray
        settings of its own (no RAY_AUTH_MODE, no RAY_ADDRESS)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        return {**env, "HOME": str(home or self.home), **extra}


@contextlib.contextmanager
def local_cluster(root: Path, cpus: list[int], timeout: float = 600) -> Iterator[LocalCluster]:
    """A head with ``cpus[0]`` CPUs and a node for each further entry, all registered with
    the GCS before it yields."""
    home = root / "home"
    token = secrets.token_hex(16)
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)
    # Ray gives a starting GCS 30 s to publish its port; a loaded 2-core machine took longer.
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(home), RAY_gcs_server_port_wait_time_s="120")
    (gcs, client) = free_ports(2)
    address = f"127.0.0.1:{gcs}"
    temp_dir = Path("/tmp") / f"shoal-ray-{secrets.token_hex(3)}"  # short: socket paths
    nodes: list[RayNode] = []
    try:
        nodes.append(RayNode(["--head", "--port", str(gcs), "--include-dashboard", "false",
                              "--temp-dir", str(temp_dir), "--ray-client-server-port",
                              str(client)], cpus[0], env, root / "head.log"))
        nodes[0].wait_started(timeout)
        # A further node's `ray start` does not turn token mode on by itself, as the
        # head's does: it is refused (InvalidAuthToken) without RAY_AUTH_MODE=token.
        for index, count in enumerate(cpus[1:], start=1):
            nodes.append(RayNode(["--address", address], count,
                                 {**env, "RAY_AUTH_MODE": "token"},
                                 root / f"node-{index}.log"))
            nodes[-1].wait_started(timeout)
        wait_for(lambda: alive_nodes(address, token) == len(cpus), timeout,
                 "every node to register with the GCS")
        yield LocalCluster(address, token, home, nodes)
    finally:
        stop_nodes(nodes)
        shutil.rmtree(temp_dir, ignore_errors=True)
