"""Metrics overhead: an actor's env steps/s with and without its Prometheus exporter.

    python benchmarks/metrics_overhead.py [--envs-per-actor 8] [--seconds 5] [--rounds 6] \
        [--scrapes-per-s 1] [--json]

One DQN actor (CartPole-v1, the real step loop: policy, n-step adder, Ape-X priorities,
gRPC Insert) writes to a replay server in a process of its own whose table never blocks
(min-size rate limiter, no learner), so the actor runs as fast as it can. Rounds alternate
"exporter off" and "exporter on": on, the actor's ``/metrics`` is served and scraped
--scrapes-per-s times a second from another thread, as Prometheus (every 5 s by default)
and ``shoal top`` (every 2 s) would, only more often. Each round's rate counts from its
first env step. The counters the collector reads (``ActorStats``) are kept in both
conditions: they are the actor's own bookkeeping (one ``perf_counter`` pair per vector
step for inference time), not the exporter's.

Prints per-condition medians and the overhead; with --json the last line is
``{"envs_per_actor", "rounds", "scrapes_per_s", "off_env_steps_per_s",
"on_env_steps_per_s", "overhead"}`` (overhead = 1 - on / off). Nothing is asserted: the
machine is shared and noisy, which is why the conditions alternate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from shoal.actors.actor import Actor
from shoal.actors.config import CollectionConfig
from shoal.actors.envs import probe_spec
from shoal.actors.metrics import ActorCollector
from shoal.algorithms.dqn import ALGORITHM as DQN
from shoal.algorithms.dqn import DQNConfig
from shoal.protos.exposition import MetricsServer
from shoal.protos.tables import MinSize
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.process import SpawnedReplayServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs-per-actor", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="per round")
    parser.add_argument("--rounds", type=int, default=6, help="per condition")
    parser.add_argument("--scrapes-per-s", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def free_running_table(config: DQNConfig) -> dict:
    """DQN's table, larger and never holding the actor back: the actor's own cost is what
    is measured."""
    table = DQN.table(config, probe_spec("CartPole-v1"), 1)
    return dataclasses.replace(table, max_size=2_000_000, rate_limiter=MinSize(1)).to_dict()


def one_round(actor: Actor, seconds: float, exporter: bool, scrapes_per_s: float) -> float:
    """Env steps/s of ``actor`` over ``seconds`` from its first step."""
    stop, scraping = threading.Event(), threading.Event()
    server = MetricsServer(ActorCollector(actor.stats, "bench", "actor-0")) if exporter else None

    def scrape() -> None:
        while not scraping.wait(1 / scrapes_per_s):
            assert server is not None
            urllib.request.urlopen(f"http://{server.address}/metrics", timeout=5).read()

    scraper = threading.Thread(target=scrape, daemon=True) if server else None
    loop = threading.Thread(target=actor.run, args=(stop,), daemon=True)
    before = actor.stats.env_steps
    actor.stats.first_step_time = None
    loop.start()
    if scraper is not None:
        scraper.start()
    while actor.stats.first_step_time is None:
        time.sleep(0.01)
    first, start_steps = time.time(), actor.stats.env_steps
    time.sleep(seconds)
    steps, elapsed = actor.stats.env_steps - start_steps, time.time() - first
    stop.set()
    scraping.set()
    loop.join()
    if scraper is not None:
        scraper.join()
    if server is not None:
        server.close()
    assert actor.stats.env_steps > before
    return steps / elapsed


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = DQNConfig()
    with tempfile.TemporaryDirectory() as scratch:
        tables = Path(scratch) / "tables.yaml"
        tables.write_text(yaml.safe_dump({"tables": [free_running_table(config)]}))
        with SpawnedReplayServer(tables, Path(scratch) / "server") as server, \
                ReplayClient(server.address, server.token) as client:
            actor = Actor(DQN, config, "CartPole-v1", probe_spec("CartPole-v1"),
                          CollectionConfig(args.envs_per_actor), actor_index=0, num_actors=1,
                          seed=0, replay=client, table="transitions", weights=None)
            one_round(actor, 1.0, False, args.scrapes_per_s)  # warm-up
            rates: dict[bool, list[float]] = {False: [], True: []}
            for round_ in range(args.rounds):
                for exporter in (False, True) if round_ % 2 == 0 else (True, False):
                    rates[exporter].append(one_round(actor, args.seconds, exporter,
                                                     args.scrapes_per_s))
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    overhead = 1 - on / off
    print(f"{'exporter':<10}{'env steps/s (median)':>22}  rounds")
    print("-" * 60)
    for label, exporter in (("off", False), ("on", True)):
        runs = " ".join(f"{r:,.0f}" for r in rates[exporter])
        print(f"{label:<10}{statistics.median(rates[exporter]):>22,.0f}  {runs}")
    print(f"overhead of the exporter at {args.scrapes_per_s:g} scrape/s: {overhead:.2%}")
    if args.json:
        print(json.dumps({"envs_per_actor": args.envs_per_actor, "rounds": args.rounds,
                          "scrapes_per_s": args.scrapes_per_s, "off_env_steps_per_s": off,
                          "on_env_steps_per_s": on, "overhead": overhead}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
