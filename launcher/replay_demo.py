"""``shoal replay-demo``: the main job until the DQN issue lands.

Starts ``shoal replay-server`` as a real process, streams synthetic CartPole-sized
transitions into a prioritized table, samples batches with importance weights, sends
priority updates back, checkpoints, and stops the server with SIGTERM.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from shoal.algorithms.transitions import importance_weights
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.process import SpawnedReplayServer

DEMO_BETA = 0.4
"""The importance-sampling exponent the demo weighs its batches with (as a learner would at
the start of its annealing)."""

DEMO_TABLES = {
    "checkpoint": {"every_seconds": 0},
    "tables": [{
        "name": "transitions",
        "max_size": 1_000_000,
        "selector": {"type": "prioritized", "alpha": 0.6},
        "rate_limiter": {"type": "min_size", "min_size": 1000},
        "signature": {
            "obs": {"dtype": "float32", "shape": [4]},
            "action": {"dtype": "int64", "shape": []},
            "reward": {"dtype": "float32", "shape": []},
            "next_obs": {"dtype": "float32", "shape": [4]},
            "discount": {"dtype": "float32", "shape": []},
        },
    }],
}


def synthetic_transitions(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "obs": rng.normal(size=(count, 4)).astype(np.float32),
        "action": rng.integers(0, 2, size=count),
        "reward": np.ones(count, np.float32),
        "next_obs": rng.normal(size=(count, 4)).astype(np.float32),
        "discount": np.full(count, 0.99, np.float32),
    }


def run_demo(items: int, batches: int) -> int:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="shoal-demo-") as scratch:
        workdir = Path(scratch)
        config = workdir / "tables.yaml"
        config.write_text(yaml.safe_dump(DEMO_TABLES))
        print(f"starting shoal replay-server ({config})")
        checkpoints = workdir / "checkpoints"
        with SpawnedReplayServer(config, workdir, checkpoint_dir=checkpoints) as server, \
                ReplayClient(server.address, server.token) as client:
            print(f"listening on {server.address}")
            data = synthetic_transitions(items, rng)
            start = time.perf_counter()
            with client.writer("transitions") as writer:
                for begin in range(0, items, 1024):
                    writer.extend({k: v[begin:begin + 1024] for k, v in data.items()})
            insert_seconds = time.perf_counter() - start

            start = time.perf_counter()
            smallest_weight = 1.0
            with client.sample("transitions", 256, prefetch=4,
                               num_batches=batches) as sampler:
                for batch in sampler:
                    td_error = rng.exponential(size=batch.keys.size)
                    client.update_priorities("transitions", batch.keys, td_error + 1e-3)
                    smallest_weight = min(smallest_weight, float(
                        importance_weights(batch.probabilities, DEMO_BETA).min()))
            sample_seconds = time.perf_counter() - start

            info = client.info()["transitions"]
            path = client.checkpoint()
            rows = [
                ("inserted", f"{items:,} transitions in {insert_seconds:.2f}s "
                             f"({items / insert_seconds:,.0f}/s)"),
                ("sampled", f"{batches} batches of 256 + priority updates in "
                            f"{sample_seconds:.2f}s ({batches * 256 / sample_seconds:,.0f}/s)"),
                ("table", f"size {info.size:,} of {info.max_size:,}, {info.selector}, "
                          f"{info.stored_bytes / 1e6:.1f} MB"),
                ("priorities", f"{info.priority_updates:,} updated; smallest importance "
                               f"weight seen {smallest_weight:.3f} (beta {DEMO_BETA})"),
                ("checkpoint", path),
            ]
            for label, text in rows:
                print(f"  {label:<11} {text}")
        print(f"server stopped with SIGTERM (exit {server.process.returncode})")
    return 0
