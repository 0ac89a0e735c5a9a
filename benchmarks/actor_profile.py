"""Where one actor's time goes: a shoal ``Actor.run`` under cProfile, writing to a real
replay service in a child process whose table never holds it back, and the same vector env
+ policy loop bare, side by side.

    python benchmarks/actor_profile.py [--algo dqn] [--env CartPole-v1] [--envs-per-actor 8] \
        [--seconds 10] [--config FILE] [--python-envs] [--top 20] [--json]

The actor runs in this process with no learner (no weights to follow), as it would with a
learner far behind; the table is the run's own (``resolve`` of the same settings) with its
rate limiter replaced by a minimum size of 1, so nothing waits. Printed: env steps/s of the
bare loop and of the actor (each measured without the profiler), the actor's time split
into stages (cumulative time of the functions that do them, as fractions of the profiled
run), and the functions with the most own time. ``--python-envs``: gymnasium's
SyncVectorEnv of single envs instead of the native vector envs.

With --json the last line is one JSON object: env, envs_per_actor, native_envs,
raw_env_steps_per_s, actor_env_steps_per_s, ratio, stages (name: fraction of the actor's
time), top (function, own seconds, calls). Nothing is asserted: the machine is noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import multiprocessing
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shoal.protos.tables import MinSize, TableSpec

STAGES = {  # stage: functions whose cumulative time is that stage's (file suffix, name)
    "policy.act": [("algorithms/dqn.py", "act"), ("algorithms/actor_critic.py", "act"),
                   ("algorithms/sac.py", "act")],
    "envs.step": [("vector/sync_vector_env.py", "step"), ("actors/native_envs.py", "step")],
    "adder": [("actors/adders.py", "add"), ("actors/adders.py", "take")],
    "initial priorities": [("algorithms/dqn.py", "initial_priorities")],
    "writer (encode, send)": [("replay_service/reconnecting.py", "extend")],
    "episode returns": [("actors/envs.py", "episode_returns")],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="dqn")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--envs-per-actor", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="per timed run")
    parser.add_argument("--config", type=Path, help="algorithm settings YAML")
    parser.add_argument("--python-envs", action="store_true",
                        help="SyncVectorEnv of single envs, not the native vector envs")
    parser.add_argument("--top", type=int, default=20, help="functions listed by own time")
    parser.add_argument("--json", action="store_true", help="end with a JSON object")
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace) -> Any:
    import yaml

    from shoal.launcher.config import resolve

    values = yaml.safe_load(args.config.read_text()) if args.config else {}
    return resolve({"algo": args.algo, "env": args.env, "algorithm": values,
                    "collection": {"envs_per_actor": args.envs_per_actor}},
                   check_learner=False)


def serve(spec: TableSpec, token: str, ready: Any, stop: Any) -> None:
    """The replay service of the child process: serves until ``stop`` is set."""
    from shoal.replay_service.server import ReplayServer
    from shoal.replay_service.table import Table

    with ReplayServer([Table.from_spec(spec)], token=token, host="127.0.0.1",
                      port=0) as server:
        ready.send(server.address)
        stop.wait()


def use_envs(native: bool) -> None:
    """Makes the actor's envs native or not (the actor asks envs.make_vector_env)."""
    from shoal.actors import actor, envs

    def make(env_id: str, num_envs: int, seed: int, training: bool = True) -> Any:
        return envs.make_vector_env(env_id, num_envs, seed, training, native=native)

    actor.make_vector_env = make


def actor_rate(config: Any, address: str, token: str, seconds: float,
               profile: cProfile.Profile | None = None) -> float:
    """Env steps/s of one Actor.run for ``seconds`` (after a second of warm-up)."""
    from shoal.actors.actor import Actor
    from shoal.replay_service.client import ReplayClient

    with ReplayClient(address, token) as client:
        actor = Actor(config.definition, config.algorithm, config.env, config.env_spec,
                      config.collection, actor_index=0, num_actors=1, seed=config.seed,
                      replay=client, table=config.table.name, weights=None)
        stop = threading.Event()
        marks: dict[str, tuple[float, int]] = {}

        def watch() -> None:
            time.sleep(1.0)
            marks["start"] = (time.perf_counter(), actor.stats.env_steps)
            time.sleep(seconds)
            marks["end"] = (time.perf_counter(), actor.stats.env_steps)
            stop.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        if profile is not None:
            profile.enable()  # cProfile sees the thread that enables it: this one
        actor.run(stop)
        if profile is not None:
            profile.disable()
        watcher.join()
    (t0, s0), (t1, s1) = marks["start"], marks["end"]
    return (s1 - s0) / (t1 - t0)


def raw_rate(config: Any, native: bool, seconds: float) -> float:
    import torch

    from shoal.actors.envs import make_vector_env

    torch.set_num_threads(1)
    envs = make_vector_env(config.env, config.collection.envs_per_actor, 0, native=native)
    policy = config.definition.make_policy(config.algorithm, config.env_spec, 0, 1, 0)
    obs, _ = envs.reset(seed=0)
    try:
        for _ in range(100):
            obs, *_ = envs.step(policy.act(obs).actions)
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(50):
                obs, *_ = envs.step(policy.act(obs).actions)
            steps += 50 * envs.num_envs
        return steps / (time.perf_counter() - started)
    finally:
        envs.close()


def stage_fractions(stats: pstats.Stats, total: float) -> dict[str, float]:
    found: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for stage, functions in STAGES.items():
        seconds = 0.0
        for (path, _, name), (_, _, _, cumulative, _) in raw.items():
            if any(path.endswith(suffix) and name == wanted for suffix, wanted in functions):
                seconds += cumulative
        found[stage] = seconds / total if total else 0.0
    return found


def top_functions(stats: pstats.Stats, count: int) -> list[tuple[str, float, int]]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(((f"{Path(path).parent.name}/{Path(path).name}:{line} {name}", own, calls)
                   for (path, line, name), (_, calls, own, _, _) in raw.items()),
                  key=lambda row: -row[1])
    return rows[:count]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = run_config(args)
    native = not args.python_envs
    use_envs(native)
    spec = dataclasses.replace(config.table, rate_limiter=MinSize(1))
    token = "profile"
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    stop = context.Event()
    server = context.Process(target=serve, args=(spec, token, theirs, stop), daemon=True)
    server.start()
    try:
        address = ours.recv()
        raw = raw_rate(config, native, args.seconds)
        plain = actor_rate(config, address, token, args.seconds)
        profile = cProfile.Profile()
        actor_rate(config, address, token, args.seconds, profile)
    finally:
        stop.set()
        server.join(timeout=30)
    stats = pstats.Stats(profile, stream=io.StringIO())
    total = max(sum(row[3] for key, row in stats.stats.items()  # type: ignore[attr-defined]
                    if key[2] == "run" and key[0].endswith("actors/actor.py")), 1e-9)
    stages = stage_fractions(stats, total)
    top = top_functions(stats, args.top)
    print(f"{config.env}, {args.envs_per_actor} envs, "
          f"{'native' if native else 'SyncVectorEnv'} vector env, {args.algo}")
    print(f"{'bare env + policy loop':<34} {raw:>10,.0f} env steps/s")
    print(f"{'shoal actor (no profiler)':<34} {plain:>10,.0f} env steps/s")
    print(f"{'ratio':<34} {plain / raw:>10.3f}")
    print(f"\nActor.run's {total:.1f} s under the profiler, by stage (cumulative)")
    for stage, fraction in stages.items():
        print(f"  {stage:<30} {fraction:>6.1%}")
    print(f"  {'the rest':<30} {max(0.0, 1 - sum(stages.values())):>6.1%}")
    print("\nfunctions by own time")
    for name, own, calls in top:
        print(f"  {own:>7.3f} s {calls:>9,} calls  {name}")
    if args.json:
        print(json.dumps({"env": config.env, "envs_per_actor": args.envs_per_actor,
                          "native_envs": native, "raw_env_steps_per_s": raw,
                          "actor_env_steps_per_s": plain, "ratio": plain / raw,
                          "stages": stages, "top": top}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
