"""Joining a Ray cluster that runs already: what ``shoal train --address`` checks before it
places anything, so that each way of failing is one line said in seconds, not Ray's
minutes of retries or a timeout traceback.

- **The address** must answer as a Ray cluster's GCS (``probe``).
- **Token authentication.** ``ray start`` turns it on when a token exists where it starts
  (``~/.ray/auth_token``, which every local ``ray.init()`` of Ray 2.60 writes), and Ray
  2.61 turns it on for every cluster; but a driver given an explicit address never turns
  it on by itself, and is refused. ``probe`` asks the GCS without a token first; refused,
  it turns token mode on when this machine has a token (as Ray does for
  ``address="auto"``), asks again, and says what to set when that is refused too.
- **Capacity** (``check_fits``): the resources the run asks Ray for, against what the
  cluster has, both named in the one line.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROBE_SECONDS = 3.0
"""How long each step of ``probe`` waits: the TCP connect, then each GCS call."""

GET_TOKEN = "`ray get-auth-token` on its head prints it"


class ClusterRefused(Exception):
    """Nothing to join at the address, or the cluster there refuses this process, or has
    too little for the run: a usage error, in one line that says what to change."""


def token_source() -> str | None:
    """Where Ray would read its token from, in Ray's own order of precedence; None when
    this machine has none. A RAY_AUTH_TOKEN_PATH that cannot be read is refused here:
    Ray aborts the process on one."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        try:
            if Path(path).read_text().strip():
                return f"RAY_AUTH_TOKEN_PATH ({path})"
        except OSError as error:
            raise ClusterRefused(f"RAY_AUTH_TOKEN_PATH: cannot read {path} "
                                 f"({error.strerror})") from None
        raise ClusterRefused(f"RAY_AUTH_TOKEN_PATH: {path} is empty")
    default = Path.home() / ".ray" / "auth_token"
    try:
        return str(default) if default.read_text().strip() else None
    except OSError:
        return None


def use_token_auth() -> None:
    """Token mode for this process and the Ray it starts, as Ray turns it on itself for
    ``address="auto"``: the environment, then Ray's cached config and token re-read."""
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import (  # type: ignore[attr-defined] # compiled, no stubs
        AuthenticationTokenLoader,
        Config,
    )

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def probe(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Refuses, in seconds, a HOST:PORT that is not a Ray cluster's GCS or whose GCS
    refuses this process's token (ray.init retries either for minutes, deaf to SIGTERM
    meanwhile); turns token mode on when the cluster wants it and a token is here. Other
    forms (``auto``, ``ray://``) go to ray.init as they are."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError:
        raise ClusterRefused(f"nothing answers at {address}") from None
    status, details = _ask_cluster_id(address, timeout)
    if status == "UNAUTHENTICATED":
        mode = os.environ.get("RAY_AUTH_MODE")
        source = token_source()
        if mode is not None and mode.lower() != "token":
            raise ClusterRefused(
                f"{address} has Ray's token authentication on, and RAY_AUTH_MODE is "
                f"{mode!r}: unset it (or set it to token) and give the cluster's token in "
                f"RAY_AUTH_TOKEN ({GET_TOKEN})")
        if source is None:
            raise ClusterRefused(
                f"{address} has Ray's token authentication on and this machine has no "
                f"token: set RAY_AUTH_TOKEN to the cluster's ({GET_TOKEN}), or "
                f"RAY_AUTH_TOKEN_PATH to a file that holds it")
        if mode is None:
            use_token_auth()
            status, details = _ask_cluster_id(address, timeout)
        if status == "UNAUTHENTICATED":
            raise ClusterRefused(
                f"{address} refuses the Ray token from {source} ({details}): give the "
                f"cluster's own in RAY_AUTH_TOKEN ({GET_TOKEN})")
    if status != "OK":
        raise ClusterRefused(f"{address} answers, but not as a Ray cluster's GCS "
                             f"({status} to GetClusterId)")


def _ask_cluster_id(address: str, timeout: float) -> tuple[str, str]:
    """The GCS's answer to GetClusterId (status name, details), on a channel made as Ray
    makes its own: its TLS settings, and its token when token mode is on."""
    import grpc
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    channel = init_grpc_channel(address)
    try:
        gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
            gcs_service_pb2.GetClusterIdRequest(),  # type: ignore[attr-defined] # protobuf-made
            timeout=timeout)
    except grpc.RpcError as error:
        return error.code().name, str(error.details())
    finally:
        channel.close()
    return "OK", ""


@dataclass(frozen=True)
class Demand:
    """What a run asks Ray for as it starts: one CPU for each of its components (each a
    busy process: the replay service serves every insert and sample, the learner trains,
    an actor steps its envs and runs its policy), and the learner's GPU when it takes one."""

    actors: int
    learner_gpu: bool = False

    @property
    def cpus(self) -> float:
        return 2.0 + self.actors

    def describe(self) -> str:
        gpu = " and 1 GPU" if self.learner_gpu else ""
        return (f"{_count(self.cpus)} CPUs{gpu} (replay service 1, learner 1, "
                f"{self.actors} actors x 1)")


def check_fits(demand: Demand, total: dict[str, float], free: dict[str, float],
               nodes: int, address: str) -> None:
    """Refuses a run the cluster cannot place as it starts: a component Ray cannot place
    waits for resources with no end, and the launcher's first call to it times out.
    Actors added later (``shoal scale``, ``--autoscale``) may wait: they are pending."""
    has_cpus, free_cpus = total.get("CPU", 0.0), free.get("CPU", 0.0)
    if demand.cpus > free_cpus:
        held = "" if free_cpus >= has_cpus else f", {_count(free_cpus)} of them free"
        raise ClusterRefused(
            f"the run asks Ray for {demand.describe()} and the cluster at {address} has "
            f"{_count(has_cpus)} CPUs on {nodes} node{'s' if nodes != 1 else ''}{held}: "
            f"give fewer --actors, or add nodes")


def _count(value: float) -> str:
    return f"{value:g}"
