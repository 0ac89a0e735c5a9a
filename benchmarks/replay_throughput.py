"""Replay service throughput: in-process sample/update, gRPC insert/sample, Atari frame stacks.

    python benchmarks/replay_throughput.py [--quick] [--json]

Prints a table; with --json the last line is one JSON object of the numbers. The gRPC server
is the real ``shoal replay-server`` in a process of its own, and every writer is a process of
its own too, so no GIL is shared between the two ends. Speeds are printed, never asserted:
the machine is shared and noisy, so every number is the median over a few repetitions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shoal.replay_service import FieldSpec, MinSize, OldestFirst, Prioritized, Table
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.process import SpawnedReplayServer

CARTPOLE = {"obs": ("float32", [4]), "action": ("int64", []), "reward": ("float32", []),
            "next_obs": ("float32", [4]), "discount": ("float32", [])}  # 48 bytes an item
ATARI_SHAPE = (84, 84, 4)            # a stack of the last 4 grayscale frames
ATARI_ITEM_BYTES = 84 * 84 * 4 + 8   # the stack plus an int64 action, uncompressed
ATARI_BATCH = 32                     # the Nature DQN batch size
COMPRESSIONS = ("lz4", "zstd", "none")
HEADLINE_COMPRESSION = "lz4"         # what the atari_* keys without a codec name report
ITEMS_PER_MESSAGE = 256
PREFETCH = 4
ACTOR_TRANSITIONS_PER_S = 5_000      # assumption: one vectorised CartPole actor process
TARGETS = {  # key: (target, True if smaller is better)
    "sample_256_of_1m_ms": (0.25, True), "update_256_ms": (0.25, True),
    "grpc_insert_per_s": (1_000_000, False), "grpc_sample_per_s": (700_000, False),
}


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; --quick keeps the 1M table but repeats less."""

    in_process_repeats: int
    rounds: int
    insert_items: int        # per round, one writer; the 4-writer case gives each half
    sample_batches: int      # per round
    atari_items: int         # per round and codec
    atari_batches: int       # per round and codec


QUICK = Sizes(500, 3, 200_000, 300, 1_000, 150)
FULL = Sizes(3_000, 5, 500_000, 1_000, 4_000, 400)


def cartpole(count: int, seed: int) -> dict[str, np.ndarray]:
    """CartPole-sized transitions; values do not matter to the replay service, only sizes."""
    rng = np.random.default_rng(seed)
    return {"obs": rng.normal(size=(count, 4)).astype(np.float32),
            "action": rng.integers(0, 2, count), "reward": np.ones(count, np.float32),
            "next_obs": rng.normal(size=(count, 4)).astype(np.float32),
            "discount": np.full(count, 0.99, np.float32)}


def area_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Weights that average input pixels into output pixels by overlap (cv2's INTER_AREA)."""
    edges = np.arange(size_out + 1) * size_in / size_out
    pixels = np.arange(size_in)
    overlap = (np.minimum(edges[1:, None], pixels + 1)
               - np.maximum(edges[:-1, None], pixels)).clip(0)
    return (overlap / (size_in / size_out)).astype(np.float32)


def ale_pong_frames(count: int, seed: int) -> np.ndarray:
    """Real Pong frames (random policy, frameskip 4), grayscale, shrunk to 84x84 as DQN does."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Pong-v5", obs_type="grayscale")
    env.reset(seed=seed)
    rows, cols = area_matrix(210, 84), area_matrix(160, 84)
    rng = np.random.default_rng(seed)
    frames = np.empty((count, 84, 84), np.uint8)
    for index in range(count):
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        frames[index] = np.rint(rows @ obs.astype(np.float32) @ cols.T)
        if terminated or truncated:
            env.reset()
    env.close()
    return frames


def synthetic_pong_frames(count: int, seed: int) -> np.ndarray:
    """Pong-like frames: flat background, walls, two paddles and a bouncing ball that move
    a little every frame, so compressors see what they would see on real Pong."""
    rng = np.random.default_rng(seed)
    frames = np.full((count, 84, 84), 87, np.uint8)
    frames[:, 12:14], frames[:, 78:80] = 236, 236                   # top and bottom walls
    ball, velocity, left, right = np.array([40.0, 40.0]), np.array([1.5, 2.0]), 40.0, 40.0
    for index in range(count):
        ball += velocity
        if not 15 <= ball[0] <= 75:
            velocity[0] = -velocity[0]
        if not 10 <= ball[1] <= 72:
            velocity[1] = -velocity[1]
        ball = ball.clip([15, 10], [75, 72])
        left += np.clip(ball[0] - left, -2, 2) + rng.normal()
        right += np.clip(ball[0] - right, -1, 1)
        frames[index, int(left) - 4:int(left) + 4, 8:10] = 147      # paddles
        frames[index, int(right) - 4:int(right) + 4, 74:76] = 148
        frames[index, int(ball[0]):int(ball[0]) + 2, int(ball[1]):int(ball[1]) + 1] = 236
    return frames


def atari_stacks(count: int, seed: int) -> tuple[np.ndarray, str]:
    """[count, 84, 84, 4] frame stacks that overlap like a real frame stack (stack i+1 is
    stack i shifted by one frame), and where the frames came from."""
    try:
        frames, source = ale_pong_frames(count + 3, seed), "real Pong frames (ale_py)"
    except Exception as error:  # no ale_py, no ROMs: say so and carry on
        frames = synthetic_pong_frames(count + 3, seed)
        source = f"SYNTHETIC Pong-like frames (ale_py unavailable: {type(error).__name__})"
    windows = np.lib.stride_tricks.sliding_window_view(frames, 4, axis=0)
    return np.ascontiguousarray(windows), source


def median_ms(run: Callable[[Any], Any], prepare: Callable[[], Any], repeats: int) -> float:
    """Median wall time of run(prepare()) in ms; prepare's own time is not counted."""
    times = []
    for _ in range(repeats):
        argument = prepare()
        start = time.perf_counter()
        run(argument)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_in_process(sizes: Sizes) -> dict[str, float]:
    """A 1M-item prioritized Table without gRPC: the floor the service cannot beat."""
    signature = {name: FieldSpec(dtype, tuple(shape)) for name, (dtype, shape) in CARTPOLE.items()}
    table = Table("transitions", Prioritized(alpha=0.6), OldestFirst(), 1_000_000,
                  MinSize(1000), signature, seed=0)
    rng = np.random.default_rng(0)
    chunk = cartpole(100_000, seed=0)
    for _ in range(10):  # priorities spread over 3 orders of magnitude, like |TD errors|
        table.insert(chunk, rng.exponential(size=100_000) + 1e-3)
    sample = median_ms(lambda _: table.sample(256), lambda: None,
                       sizes.in_process_repeats)
    update = median_ms(
        lambda keys: table.update_priorities(keys, rng.exponential(size=256) + 1e-3),
        lambda: table.sample(256).keys, sizes.in_process_repeats)
    return {"sample_256_of_1m_ms": sample, "update_256_ms": update}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table_config(name: str, max_size: int, signature: dict[str, Any], min_size: int) -> dict:
    return {"name": name, "max_size": max_size, "selector": {"type": "prioritized", "alpha": 0.6},
            "rate_limiter": {"type": "min_size", "min_size": min_size}, "signature": signature}


@contextmanager
def replay_server(tables: list[dict]) -> Iterator[SpawnedReplayServer]:
    """The real ``shoal replay-server`` process, serving ``tables``, for the block."""
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as scratch:
        config = Path(scratch) / "tables.yaml"
        config.write_text(yaml.safe_dump({"tables": tables}))
        with SpawnedReplayServer(config, Path(scratch)) as server:
            yield server


def _writer_process(address: str, token: str, table: str, columns: dict[str, np.ndarray],
                    rounds: int, barrier: Any) -> None:
    """One actor: each round, waits for the start, streams its items, waits for the end."""
    rng = np.random.default_rng(os.getpid())
    count = len(next(iter(columns.values())))
    with ReplayClient(address, token) as client:
        client.wait_ready(timeout=30)
        for _ in range(rounds):
            barrier.wait()
            with client.writer(table, max_items_per_message=ITEMS_PER_MESSAGE) as writer:
                for begin in range(0, count, ITEMS_PER_MESSAGE):  # Ape-X: actor's priorities
                    stop = begin + ITEMS_PER_MESSAGE
                    writer.extend({k: v[begin:stop] for k, v in columns.items()},
                                  priorities=rng.exponential(size=min(stop, count) - begin))
            barrier.wait()  # closing the writer returned: the server has stored everything


def insert_rate(server: SpawnedReplayServer, table: str, columns_per_writer: list[dict],
                rounds: int) -> tuple[float, float]:
    """Median items/s over rounds with one writer process per entry, and the server's CPU
    microseconds per Insert message.

    Server time per message: the server is a process of its own, so the CPU time it spends
    during a round (utime + stime of all its threads, gRPC's included, from /proc) divided
    by the Insert messages it received in that round is its cost per message, undisturbed
    by the writers' time. The writers share the 2 cores, so wall time alone would not say.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(columns_per_writer) + 1, timeout=600)
    processes = [ctx.Process(target=_writer_process, daemon=True,
                             args=(server.address, server.token, table, columns, rounds, barrier))
                 for columns in columns_per_writer]
    for process in processes:
        process.start()
    items = sum(len(columns["action"]) for columns in columns_per_writer)
    messages = sum(-(-len(columns["action"]) // ITEMS_PER_MESSAGE)
                   for columns in columns_per_writer)
    rates, us_per_message = [], []
    for _ in range(rounds):
        barrier.wait()
        start, cpu_start = time.perf_counter(), cpu_seconds(server.process.pid)
        barrier.wait()
        rates.append(items / (time.perf_counter() - start))
        us_per_message.append((cpu_seconds(server.process.pid) - cpu_start) / messages * 1e6)
    for process in processes:
        process.join()
    return statistics.median(rates), statistics.median(us_per_message)


def sample_rate(server: SpawnedReplayServer, client: ReplayClient, table: str, batch_size: int,
                batches: int, rounds: int) -> tuple[float, float]:
    """Median items/s of one prefetching sampler (decoding included; the first batch, which
    waits for the stream to start, is not timed), and server CPU microseconds per batch."""
    rates, us_per_batch = [], []
    for _ in range(rounds):
        with client.sample(table, batch_size, prefetch=PREFETCH,
                           num_batches=batches + 1, reuse_buffers=2) as sampler:
            next(sampler)
            start, cpu_start = time.perf_counter(), cpu_seconds(server.process.pid)
            for _batch in sampler:
                pass
            rates.append(batches * batch_size / (time.perf_counter() - start))
            us_per_batch.append((cpu_seconds(server.process.pid) - cpu_start) / batches * 1e6)
    return statistics.median(rates), statistics.median(us_per_batch)


def bench_grpc(sizes: Sizes, stacks: np.ndarray) -> dict[str, float]:
    """CartPole inserts (1 and 4 writers) and sampling, then Atari both ways per codec."""
    signature = {name: {"dtype": dtype, "shape": shape}
                 for name, (dtype, shape) in CARTPOLE.items()}
    tables = [table_config("cartpole", 1_000_000, signature, min_size=1000)]
    for codec in COMPRESSIONS:
        frames = {"dtype": "uint8", "shape": list(ATARI_SHAPE), "compression": codec}
        tables.append(table_config(f"atari_{codec}", 4 * sizes.atari_items,
                                   {"obs": frames, "action": {"dtype": "int64", "shape": []}},
                                   min_size=ATARI_BATCH))
    results: dict[str, float] = {}
    with replay_server(tables) as server, ReplayClient(server.address, server.token) as client:
        one = [cartpole(sizes.insert_items, seed=1)]
        results["grpc_insert_per_s"], results["grpc_us_per_message"] = insert_rate(
            server, "cartpole", one, sizes.rounds)
        four = [cartpole(sizes.insert_items // 2, seed=2 + i) for i in range(4)]
        results["grpc_insert_4_writers_per_s"], _ = insert_rate(
            server, "cartpole", four, sizes.rounds)
        results["grpc_sample_per_s"], results["grpc_us_per_sample_batch"] = sample_rate(
            server, client, "cartpole", 256, sizes.sample_batches, sizes.rounds)
        atari = {"obs": stacks, "action": np.zeros(len(stacks), np.int64)}
        for codec in COMPRESSIONS:
            table = f"atari_{codec}"
            inserts, _ = insert_rate(server, table, [atari], sizes.rounds)
            samples, _ = sample_rate(server, client, table, ATARI_BATCH, sizes.atari_batches,
                                     sizes.rounds)
            info = client.info([table])[table]
            results[f"atari_{codec}_insert_mb_per_s"] = inserts * ATARI_ITEM_BYTES / 1e6
            results[f"atari_{codec}_sample_mb_per_s"] = samples * ATARI_ITEM_BYTES / 1e6
            results[f"atari_{codec}_bytes_per_item"] = info.stored_bytes / info.size
    for kind in ("insert_mb_per_s", "sample_mb_per_s", "bytes_per_item"):
        results[f"atari_{kind}"] = results[f"atari_{HEADLINE_COMPRESSION}_{kind}"]
    return results


def verdict(key: str, value: float) -> str:
    target, smaller_is_better = TARGETS[key]
    met = value <= target if smaller_is_better else value >= target
    ratio = target / value if smaller_is_better else value / target
    return f"{'met' if met else 'MISSED'} (target {target:,g}; {ratio:.2f}x of target)"


def report(results: dict[str, float], frames_source: str, seconds: float, quick: bool) -> None:
    """The human table: numbers, targets, the Atari codec comparison, capacity estimate."""
    rows = [
        ("in-process sample(256), 1M items", "sample_256_of_1m_ms", "ms"),
        ("in-process update_priorities(256)", "update_256_ms", "ms"),
        ("gRPC insert, 1 writer, 256/message", "grpc_insert_per_s", "items/s"),
        ("gRPC insert, 4 writer processes", "grpc_insert_4_writers_per_s", "items/s"),
        ("gRPC sample, 1 sampler, batch 256", "grpc_sample_per_s", "items/s"),
        ("server CPU per Insert message", "grpc_us_per_message", "us"),
        ("server CPU per sampled batch of 256", "grpc_us_per_sample_batch", "us"),
    ]
    print(f"replay throughput ({'--quick' if quick else 'full'}; {os.cpu_count()} cores; "
          f"medians of repetitions; CartPole item = 48 bytes)")
    for label, key, unit in rows:
        value = results[key]
        text = f"{value:,.3f}" if unit == "ms" else f"{value:,.0f}"
        note = verdict(key, value) if key in TARGETS else ""
        print(f"  {label:<44} {text:>12} {unit:<8} {note}")
    print(f"\nAtari: 84x84x4 uint8 stacks of {frames_source}; MB/s of uncompressed item bytes "
          f"(1 MB = 1e6), {ITEMS_PER_MESSAGE} items/message, sample batch {ATARI_BATCH}")
    print(f"  {'codec':<8} {'insert MB/s':>12} {'sample MB/s':>12} {'stored B/item':>14} "
          f"{'ratio':>7}")
    for codec in COMPRESSIONS:
        stored = results[f"atari_{codec}_bytes_per_item"]
        print(f"  {codec:<8} {results[f'atari_{codec}_insert_mb_per_s']:>12,.1f} "
              f"{results[f'atari_{codec}_sample_mb_per_s']:>12,.1f} {stored:>14,.0f} "
              f"{ATARI_ITEM_BYTES / stored:>6.1f}x")
    writers = max(results["grpc_insert_per_s"], results["grpc_insert_4_writers_per_s"])
    print(f"\n(writer processes, sampler and server share these {os.cpu_count()} cores: "
          f"on a small machine more writers can mean fewer items/s)")
    print(f"one replay process serves ≈ {writers / ACTOR_TRANSITIONS_PER_S:,.0f} actors at "
          f"{ACTOR_TRANSITIONS_PER_S:,} env steps/s each (assumption: an actor writes "
          f"{ACTOR_TRANSITIONS_PER_S:,} CartPole transitions/s; insert capacity only, "
          f"with no learner sampling at the same time)")
    print(f"whole benchmark: {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 1 minute)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    start = time.perf_counter()
    results = bench_in_process(sizes)
    stacks, source = atari_stacks(sizes.atari_items, seed=0)
    results.update(bench_grpc(sizes, stacks))
    report(results, source, time.perf_counter() - start, args.quick)
    if args.json:
        print(json.dumps({key: round(value, 4) for key, value in results.items()}))


if __name__ == "__main__":
    main()
