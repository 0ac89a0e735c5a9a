"""Native vector envs against the Python path, side by side: agent steps/s of random
actions through ``actors.envs.make_vector_env`` with ``native=False`` (gymnasium's
SyncVectorEnv of single ``make_env``s) and ``native=True`` (ALE's C++ AtariVectorEnv, numpy
CartPole), with shoal's training preprocessing on both.

    python benchmarks/vector_envs.py [--case ALE/Pong-v5:4 ALE/Pong-v5:8 CartPole-v1:8] \
        [--seconds 5] [--repeats 3] [--json]

Each case (env id : envs) is timed --repeats times per path, the paths alternating so a
change in the machine's load falls on both; the median is printed with the ratio native /
python. Actions are drawn beforehand, so the figure is the env's. The ALE's thread pool
takes one thread per env up to the cores (what an actor gets).

With --json the last line is a JSON list, one object per case: env, envs, python_steps_per_s,
native_steps_per_s, ratio. Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from shoal.actors.envs import make_vector_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", default=["ALE/Pong-v5:4", "ALE/Pong-v5:8",
                                                      "CartPole-v1:8"],
                        help="env id and number of envs, as ID:ENVS")
    parser.add_argument("--seconds", type=float, default=5.0, help="per timed repetition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="end with a JSON list")
    return parser.parse_args(argv)


def steps_per_s(env_id: str, num_envs: int, native: bool, seconds: float) -> float:
    envs = make_vector_env(env_id, num_envs, seed=0, native=native)
    actions = np.random.default_rng(0).integers(0, envs.single_action_space.n,
                                                (1024, num_envs))
    try:
        envs.reset(seed=0)
        for row in actions[:20]:  # warm-up
            envs.step(row)
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for row in actions[steps % 1024:steps % 1024 + 32]:
                envs.step(row)
                steps += 1
        return steps * num_envs / (time.perf_counter() - started)
    finally:
        envs.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    print(f"{'env':<16} {'envs':>4} {'python (Sync)':>14} {'native':>10} {'ratio':>6}")
    for case in args.case:
        env_id, _, count = case.rpartition(":")
        num_envs = int(count)
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for flag in (False, True):
                rates[flag].append(steps_per_s(env_id, num_envs, flag, args.seconds))
        python, native = (statistics.median(rates[flag]) for flag in (False, True))
        rows.append({"env": env_id, "envs": num_envs, "python_steps_per_s": python,
                     "native_steps_per_s": native, "ratio": native / python})
        print(f"{env_id:<16} {num_envs:>4} {python:>14,.0f} {native:>10,.0f} "
              f"{native / python:>6.2f}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
