"""Shared fixtures: real tables, and a real replay server on a loopback ephemeral port."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from shoal.replay_service import (
    FieldSpec,
    MinSize,
    OldestFirst,
    Prioritized,
    ReplayClient,
    ReplayServer,
    Table,
)

TOKEN = "test-run-token"

CARTPOLE_SIGNATURE = {
    "obs": FieldSpec("float32", (4,)),
    "action": FieldSpec("int64", ()),
    "reward": FieldSpec("float32", ()),
    "next_obs": FieldSpec("float32", (4,)),
    "discount": FieldSpec("float32", ()),
}
FRAMES_SIGNATURE = {
    "frames": FieldSpec("uint8", (16, 16, 4), "lz4"),
    "action": FieldSpec("int64", ()),
}


def transitions(count: int, seed: int = 0, start: int = 0) -> dict[str, np.ndarray]:
    """CartPole-sized transitions whose ``action`` numbers them, so tests can tell them apart."""
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.normal(size=(count, 4)).astype(np.float32),
        "action": np.arange(start, start + count, dtype=np.int64),
        "reward": np.ones(count, np.float32),
        "next_obs": rng.normal(size=(count, 4)).astype(np.float32),
        "discount": np.full(count, 0.99, np.float32),
    }


def frames(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    stacks = np.zeros((count, 16, 16, 4), np.uint8)
    stacks[:, 4:8, 2:5, :] = rng.integers(100, 255, size=(count, 1, 1, 4), dtype=np.uint8)
    return {"frames": stacks, "action": np.arange(count, dtype=np.int64)}


def prioritized_table(max_size: int = 1000, alpha: float = 0.6, min_size: int = 1,
                      max_times_sampled: int = 0, seed: int = 0) -> Table:
    return Table("transitions", Prioritized(alpha), OldestFirst(), max_size, MinSize(min_size),
                 CARTPOLE_SIGNATURE, max_times_sampled=max_times_sampled, seed=seed)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "",
               interval: float = 0.005) -> None:
    """Polls ``condition`` every ``interval`` seconds until it holds; fails the test after
    ``timeout`` seconds. The timeout bounds a hang, sized for a loaded machine: a condition
    that holds returns as soon as it does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def service_tables() -> list[Table]:
    return [
        prioritized_table(max_size=1000),
        Table("frames", Prioritized(0.6), OldestFirst(), 100, MinSize(1), FRAMES_SIGNATURE),
        Table.queue("rollouts", 8, CARTPOLE_SIGNATURE),
    ]


@pytest.fixture
def server(tmp_path) -> Iterator[ReplayServer]:
    with ReplayServer(service_tables(), token=TOKEN, checkpoint_dir=tmp_path / "ckpt") as running:
        yield running


@pytest.fixture
def client(server: ReplayServer) -> Iterator[ReplayClient]:
    with ReplayClient(server.address, TOKEN) as connected:
        connected.wait_ready(30)
        yield connected


def run_config(algo: str = "dqn", env: str = "CartPole-v1", algorithm: dict | None = None,
               **sections: Any):
    """A run's configuration tree, as ``shoal train`` resolves it (``--config`` values)."""
    from shoal.launcher.config import resolve

    return resolve({"algo": algo, "env": env, "algorithm": algorithm or {}, **sections},
                   check_learner=False)
