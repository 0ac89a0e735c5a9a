"""Joining a Ray cluster as a new user does: a head started with ``ray start`` where a Ray
token exists (so token authentication is on), then ``shoal train --address`` against it.

    .venv/bin/python benchmarks/join_cluster.py [--timeout S] [--json]

Four runs, each with its command, exit code, the last lines it printed and its seconds:

1. ``token``: a 3-CPU head; ``shoal train`` from a shell with the token in ``~/.ray`` and
   no RAY_AUTH_MODE (Ray's driver, given an explicit address, does not turn token mode on).
2. ``too small``: the same head with ``RAY_AUTH_MODE=token``; the default DQN run asks
   for 4 CPUs (replay service, learner, 2 actors).
3. ``fits``: an 8-CPU head, ``--total-env-steps 30000 --target-return 150``, with
   ``RAY_AUTH_MODE=token``; 4. the same without it.

A run still going at ``--timeout`` is killed and reported so. To measure older code, put
its checkout first: ``PYTHONPATH=/path/to/old .venv/bin/python benchmarks/join_cluster.py``
(the ``shoal`` processes inherit it). With --json the last line is a list of
{"case", "command", "exit_code", "seconds", "killed", "last_lines"}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from live_run import SHOAL
from ray_nodes import LocalCluster, local_cluster

TRAIN = [*SHOAL, "train", "--algo", "dqn", "--env", "CartPole-v1"]


def attempt(case: str, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    command = [*TRAIN, *args]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, start_new_session=True)
    killed = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = True
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    lines = [line for line in output.splitlines() if line.strip()]
    return {"case": case, "command": " ".join(["shoal", *command[len(SHOAL):]]),
            "exit_code": process.returncode, "seconds": round(time.monotonic() - started, 1),
            "killed": killed, "last_lines": lines[-4:], "lines": len(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds before a run that is still going is killed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="join-cluster-") as scratch:
        root = Path(scratch)
        runs = ["--run-dir", str(root / "runs")]
        (root / "small").mkdir()
        with local_cluster(root / "small", [3]) as small:
            results.append(attempt("token", ["--address", small.address, *runs],
                                   small.env(), args.timeout))
            results.append(attempt("too small", ["--address", small.address, *runs],
                                   small.env(RAY_AUTH_MODE="token"), args.timeout))
        (root / "big").mkdir()
        big: LocalCluster
        with local_cluster(root / "big", [8]) as big:
            results.append(attempt("fits", ["--address", big.address, "--total-env-steps",
                                            "30000", "--target-return", "150", *runs],
                                   big.env(RAY_AUTH_MODE="token"), args.timeout))
            results.append(attempt("fits, no RAY_AUTH_MODE", [
                "--address", big.address, "--total-env-steps", "30000", "--target-return",
                "150", *runs], big.env(), args.timeout))
    for result in results:
        state = "killed" if result["killed"] else f"exit {result['exit_code']}"
        print(f"\n{result['case']}: {state} after {result['seconds']} s "
              f"({result['lines']} lines)\n  $ {result['command']}")
        for line in result["last_lines"]:
            print(f"  | {line[:240]}")
    if args.json:
        print(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
