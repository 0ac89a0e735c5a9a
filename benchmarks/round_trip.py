"""Where a synchronous on-policy iteration goes: each hop of the round trip timed alone, and
the sum set against a real run's iteration and SB3's.

    python benchmarks/round_trip.py [--algo ppo] [--actors 2] [--envs-per-actor 8] \
        [--rollout-length 16] [--iterations 60] [--train-seconds 20] [--no-sb3] [--json]

(a) The hops, one after another in one process, on the real parts (replay server,
ParameterService and their gRPC streams on loopback, gymnasium's vector env, the actor's
policy and collector, the learner's update), per iteration of ``--actors`` actors:

    weights    learner.weights(): the parameters copied out as numpy arrays
    publish    ParameterServer.publish: encoded into the Weights message
    reach      from publish until every actor's WeightFollower has the version (the
               Watch stream to each actor)
    load       each actor decodes the message and loads it into its policy
    act        each actor's policy.act, T times (one forward pass over its envs)
    env        each actor's envs.step, T times
    collect    each actor's collector.observe, T times (values at truncations, the adder)
    insert     each actor's rollout encoded and handed to its Insert stream (an actor
               does not wait for the acknowledgement)
    sample     until the learner has its next batch: the rollouts' transit to the
               server and into the table, the Sample stream's message back, decoded
    tensors    the batch as torch tensors (``to_device``)
    update     learner.step

Actors' hops are summed over the actors: on two cores, actors and learner take turns.

(b) ``shoal train --algo ALGO --local`` with the same settings for --train-seconds, its
milliseconds per update from its throughput lines (updates/s), and (c) SB3's PPO on the
same task with the zoo's CartPole settings (8 envs x 32 steps, 20 epochs, minibatch
256), its milliseconds per iteration; (b) over (a)'s sum is what running the hops in
four threads on two cores adds. With --json the last line is one object: hops (name ->
median ms per iteration), sum_ms, shoal_ms_per_update, sb3_ms_per_iteration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HOPS = ("weights", "publish", "reach", "load", "act", "env", "collect", "insert", "sample",
        "tensors", "update")
TOKEN = "round-trip"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c", "trpo", "impala"])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--envs-per-actor", type=int, default=8)
    parser.add_argument("--rollout-length", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--train-seconds", type=float, default=20.0)
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def hops(args: argparse.Namespace) -> dict[str, float]:
    """(a): median milliseconds per iteration of each hop, after a few warm-up ones."""
    import torch

    from shoal.actors.collectors import collector_for
    from shoal.actors.envs import make_vector_env, probe_spec
    from shoal.actors.weights import WeightFollower
    from shoal.algorithms.registry import ALGORITHMS
    from shoal.launcher.config import resolve
    from shoal.learner.parameter_service import ParameterServer
    from shoal.learner.prefetch import to_device
    from shoal.replay_service import ReplayClient, ReplayServer
    from shoal.replay_service.table import Table

    torch.set_num_threads(1)  # as in a --local run, where the actors set it process-wide
    algorithm = ALGORITHMS[args.algo]
    config = resolve({"algo": args.algo, "env": "CartPole-v1",
                      "algorithm": {"rollout_length": args.rollout_length}},
                     check_learner=False).algorithm
    spec = probe_spec("CartPole-v1")
    cpu = torch.device("cpu")
    learner = algorithm.make_learner(config, spec, cpu)
    table = Table.from_spec(algorithm.table(config, spec, args.envs_per_actor))
    times: dict[str, list[float]] = defaultdict(list)
    with (ReplayServer([table], token=TOKEN) as server,
          ReplayClient(server.address, TOKEN) as replay,
          ParameterServer(token=TOKEN) as parameters):
        followers = [WeightFollower(parameters.address, TOKEN) for _ in range(args.actors)]
        writers = [replay.writer(table.name, max_items_per_message=1)
                   for _ in range(args.actors)]
        actors = []
        for index in range(args.actors):
            envs = make_vector_env("CartPole-v1", args.envs_per_actor, seed=index)
            policy = algorithm.make_policy(config, spec, index, args.actors, index)
            collector = collector_for(algorithm, config, args.envs_per_actor, policy)
            actors.append([envs, policy, collector, envs.reset(seed=index)[0]])
        sampler = replay.sample(table.name, args.actors, prefetch=1)
        try:
            for iteration in range(1, args.iterations + 6):
                took: dict[str, float] = defaultdict(float)

                def timed(name: str, started: float, took: dict[str, float] = took) -> float:
                    now = time.perf_counter()
                    took[name] += now - started
                    return now

                t = time.perf_counter()
                weights = learner.weights()
                t = timed("weights", t)
                parameters.publish(weights, version=iteration)
                t = timed("publish", t)
                for follower in followers:
                    follower.wait_newer_than(iteration - 1, timeout=10)
                t = timed("reach", t)
                for follower, writer, actor in zip(followers, writers, actors, strict=True):
                    envs, policy, collector, obs = actor
                    newer = follower.newer_than(policy.version)
                    assert newer is not None
                    policy.load(newer[1], newer[0])
                    t = timed("load", t)
                    items = None
                    while items is None:
                        step = policy.act(obs)
                        t = timed("act", t)
                        next_obs, rewards, terminated, truncated, info = envs.step(step.actions)
                        t = timed("env", t)
                        items = collector.observe(obs, step, rewards, next_obs, terminated,
                                                  truncated, info.get("final_obs"))
                        obs = actor[3] = next_obs
                        t = timed("collect", t)
                    writer.extend(items[0])
                    writer.flush()
                    t = timed("insert", t)
                batch = next(sampler)
                t = timed("sample", t)
                on_device = to_device(batch, cpu)
                t = timed("tensors", t)
                learner.step(on_device.columns, on_device.probabilities)
                timed("update", t)
                if iteration > 5:  # warmed up
                    for name in HOPS:
                        times[name].append(took[name])
        finally:
            sampler.close()
            for writer in writers:
                writer.close()
            for follower in followers:
                follower.close()
            for envs, *_ in actors:
                envs.close()
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def shoal_ms_per_update(args: argparse.Namespace) -> float | None:
    """(b): a real --local run's milliseconds per update, between its throughput lines."""
    from actor_throughput import SHOAL, stop, throughput_lines

    parent = Path(tempfile.mkdtemp(prefix="shoal-round-trip-"))
    config = parent / "config.yaml"
    config.write_text(f"rollout_length: {args.rollout_length}\n")
    process = subprocess.Popen(
        [*SHOAL, "train", "--algo", args.algo, "--env", "CartPole-v1", "--local",
         "--actors", str(args.actors), "--envs-per-actor", str(args.envs_per_actor),
         "--total-env-steps", str(10**12), "--config", str(config), "--run-dir", str(parent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + args.train_seconds + 90
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            lines = throughput_lines(parent)
            if len(lines) >= 2 and lines[-1]["time"] - lines[1]["time"] >= args.train_seconds:
                break
    finally:
        stop(process)
    if len(lines) < 3:
        return None
    first, last = lines[1], lines[-1]  # the first line holds the start-up
    return 1000 * (last["time"] - first["time"]) / max(1, last["updates"] - first["updates"])


def sb3_ms_per_iteration(iterations: int = 40) -> float | None:
    """(c): SB3's PPO with the zoo's CartPole settings: ms per collect-and-train iteration."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        return None
    envs = make_vec_env("CartPole-v1", n_envs=8, seed=0)
    model = PPO("MlpPolicy", envs, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                n_epochs=20, ent_coef=0.0, learning_rate=1e-3, seed=0, device="cpu")
    model.learn(total_timesteps=256 * 3)  # warm-up
    started = time.perf_counter()
    model.learn(total_timesteps=256 * iterations, reset_num_timesteps=False)
    return 1000 * (time.perf_counter() - started) / iterations


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    measured = hops(args)
    total = sum(measured.values())
    real = shoal_ms_per_update(args)
    sb3 = None if args.no_sb3 else sb3_ms_per_iteration()
    print(f"{args.algo}, CartPole-v1, {args.actors} actors x {args.envs_per_actor} envs x "
          f"{args.rollout_length} steps per update; median ms per iteration:")
    for name in HOPS:
        print(f"  {name:>8} {measured[name]:7.2f}  {100 * measured[name] / total:4.0f} %")
    print(f"  {'sum':>8} {total:7.2f}")
    print(f"shoal train --local: {real:.1f} ms per update" if real else
          "shoal train --local: not measured")
    if real:
        print(f"  running the hops concurrently adds {real - total:+.1f} ms "
              f"({real / total:.2f}x the sum)")
    if sb3:
        print(f"SB3 PPO (zoo CartPole, 8 envs x 32 steps, 20 epochs): {sb3:.1f} ms per "
              f"iteration; shoal / SB3 {real / sb3:.2f}" if real else f"SB3: {sb3:.1f} ms")
    if args.json:
        print(json.dumps({"hops": measured, "sum_ms": total, "shoal_ms_per_update": real,
                          "sb3_ms_per_iteration": sb3}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
