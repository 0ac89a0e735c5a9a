"""Whole compressed stacks against frames stored once (``FieldSpec.frames``), side by side
on the same recorded Pong transitions: bytes stored per transition (the table's count,
and what tracemalloc sees with Python's objects), insert cost in process, bytes per
sampled item on the wire and the learner's decode time per batch (``decode_sample`` with
4 threads and rotating buffers, as ``learner/prefetch.py`` runs it).

    python benchmarks/frames_storage.py [--steps 1500] [--envs 4]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from shoal.actors.adders import NStepTransitionAdder
from shoal.actors.envs import make_vector_env
from shoal.protos.tables import FieldSpec, MinSize, OldestFirst, Prioritized
from shoal.replay_service import Table
from shoal.replay_service.messages import encode_sample
from shoal.replay_service.sampling import decode_sample


def record(steps: int, envs_count: int) -> dict[str, np.ndarray]:
    envs = make_vector_env("ALE/Pong-v5", envs_count, seed=1)
    adder = NStepTransitionAdder(envs_count, 3, 0.99)
    rng = np.random.default_rng(1)
    obs, _ = envs.reset(seed=1)
    for _ in range(steps):
        actions = rng.integers(0, 6, envs_count)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        adder.add(obs, actions, rewards, next_obs, terminated, truncated,
                  info.get("final_obs"), version=0)
        obs = next_obs
    envs.close()
    taken = adder.take()
    assert taken is not None
    return taken[0]


def table(frames: bool) -> Table:
    obs = FieldSpec("uint8", (4, 84, 84), "lz4", frames=frames)
    signature = {"obs": obs, "action": FieldSpec("int64"), "reward": FieldSpec("float32"),
                 "next_obs": obs, "discount": FieldSpec("float32"),
                 "version": FieldSpec("int64")}
    return Table("transitions", Prioritized(0.6), OldestFirst(), 100_000, MinSize(1),
                 signature, seed=0)


def measure(items: dict[str, np.ndarray], frames: bool, pool: ThreadPoolExecutor) -> list[str]:
    count = len(items["obs"])
    tracemalloc.start()
    filled = table(frames)
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    for first in range(0, count, 64):
        filled.insert({name: column[first:first + 64] for name, column in items.items()})
    insert_us = (time.perf_counter() - start) / count * 1e6
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    stats = filled.stats()
    row = ["frames once" if frames else "whole stacks", f"{stats.stored_bytes / count:,.0f}",
           f"{traced / count:,.0f}", f"{insert_us:.0f}"]
    for batch in (32, 256):
        messages = [encode_sample(filled.sample(batch, decompress=False), filled, batch)
                    for _ in range(20)]
        buffers: dict[str, np.ndarray] = {}
        start = time.perf_counter()
        for message in messages:
            decode_sample(message, buffers, pool, 4)
        decode_ms = (time.perf_counter() - start) / len(messages) * 1e3
        wire = np.mean([message.ByteSize() for message in messages]) / batch
        row += [f"{wire:,.0f}", f"{decode_ms:.2f}"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--envs", type=int, default=4)
    args = parser.parse_args()
    items = record(args.steps, args.envs)
    header = ["storage", "stored B/item", "traced B/item", "insert us/item",
              "wire B/item (32)", "decode ms (32)", "wire B/item (256)", "decode ms (256)"]
    with ThreadPoolExecutor(4) as pool:
        rows = [measure(items, frames, pool) for frames in (False, True)]
    print(f"{len(items['obs'])} recorded Pong transitions (n-step 3, {args.envs} envs)")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
