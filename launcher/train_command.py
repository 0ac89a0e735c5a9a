"""``shoal train``: the configuration it runs (its own, or a resumed run's), the cluster it
joins, TLS, and the run, once every check has passed; the exit code says how it ended
(``exit_codes.py``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.launcher.commands import given_flags, run_config
from shoal.launcher.exit_codes import train_exit_code
from shoal.launcher.usage import UsageError

if TYPE_CHECKING:  # the run's modules import torch: only when a command runs
    from shoal.launcher.config import TrainConfig
    from shoal.launcher.launch import Launch
    from shoal.protos.transport import Tls

STARTED = time.time()  # the command's start, for "seconds from the command's start"


def resumed_config(args: argparse.Namespace, **extra_flags: object) -> TrainConfig:
    """The configuration of ``--resume RUN``: the run's own (``RUN/config.json``, as it was
    resolved when it started), with the flags given now on top (a longer budget, more
    actors). What the checkpoints could not continue is one UsageError: another algorithm
    or env, a --config, or flags that change the replay table the checkpoint holds."""
    from shoal.launcher.config import resolve
    from shoal.launcher.run_dir import CONFIG

    run = args.resume
    if not (run / "learner" / "learner.pt").exists():
        raise UsageError(f"--resume: no learner checkpoint in {run}")
    try:
        tree = json.loads((run / CONFIG).read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--resume: cannot read {run / CONFIG}: {error}") from None
    if args.config is not None:
        raise UsageError(f"--config: --resume continues the run with its own configuration "
                         f"({run / CONFIG}); change single values with their flags")
    flags = given_flags(args)
    for flag, key in (("--algo", "algo"), ("--env", "env")):
        if flag in flags and flags.pop(flag) != tree.get(key):
            raise UsageError(f"{flag}: the run in {run} trains {key} {tree.get(key)}; "
                             f"--resume continues it as it was (leave {flag} out)")
    algorithm = tree.get("algorithm", {})
    if "env_steps_per_update" in algorithm:  # the rollout length follows the actors given now
        algorithm.pop("rollout_length", None)
    before = resolve(tree, {}, preset=False, check_learner=False).table
    config = resolve(tree, {**flags, **extra_flags}, preset=False)
    if config.run.deterministic:
        raise UsageError(f"--resume: a deterministic run is repeated from its seed, not "
                         f"resumed: its envs and replay table are not in {run}'s checkpoint")
    if (config.table.name, config.table.max_size, config.table.signature) != (
            before.name, before.max_size, before.signature):
        raise UsageError(f"{', '.join(flags)}: change the replay table the run's checkpoint "
                         f"holds ({before.name!r}, {before.max_size:,} items of "
                         f"{sorted(before.signature)}); --resume keeps it")
    return dataclasses.replace(config, settings=f"the run's own ({run / CONFIG})")


def train(args: argparse.Namespace) -> int:
    if not args.deterministic:  # a deterministic run joins no cluster
        _check_ray_address(args)

    from shoal.launcher import deterministic
    from shoal.launcher.run_dir import new_run_dir, write_config
    from shoal.launcher.training import run

    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert/--tls-key: give both, or neither")
    tls_flag = {"--tls": True} if args.tls_cert is not None else {}
    config = (resumed_config(args, **tls_flag) if args.resume is not None
              else run_config(args, **tls_flag))
    if args.print_config:
        import yaml

        print(f"# settings: {config.settings}")
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    given_tls = _given_tls(args)
    if config.run.deterministic and args.address:
        raise UsageError("--address: a deterministic run trains in this process, without "
                         "Ray; leave --address out")
    # the last check: after it, the run is created
    launch = (None if config.run.deterministic
              else _launch(args, config.run.max_actors, config.run.actors))
    run_dir = args.resume or new_run_dir(args.run_dir, config.algo, config.env, config.seed)
    tls = given_tls or _generated_tls(config, run_dir)
    write_config(run_dir, config.to_dict())
    print(f"settings: {config.settings}", file=sys.stderr)
    if config.update_shape is not None:
        print(f"update: {config.update_shape}", file=sys.stderr)
    print(f"run directory {run_dir}", file=sys.stderr, flush=True)
    # SIGTERM ends the run as Ctrl-C does: components stopped, checkpoint and summary written
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if launch is None:
        summary, interrupted = deterministic.run(config, run_dir, started=STARTED)
    else:
        summary, interrupted = run(config, run_dir, launch,
                                   tls=tls, resume=args.resume, started=STARTED)
    print(summary.line(interrupted, config.run.return_window, config.run.target_return))
    if args.json:
        print(json.dumps(dataclasses.asdict(summary)))
    return train_exit_code(summary.reached, config.run.target_return is not None, interrupted)


def _given_tls(args: argparse.Namespace) -> Tls | None:
    """``--tls-cert``/``--tls-key`` read before anything is created; None without them."""
    from shoal.protos.transport import Tls

    if args.tls_cert is None:
        return None
    try:
        return Tls.from_files(args.tls_cert, args.tls_key)
    except OSError as error:
        raise UsageError(f"--tls-cert/--tls-key: {error}") from None


def _generated_tls(config: TrainConfig, run_dir: Path) -> Tls | None:
    from shoal.protos.transport import Tls

    return Tls.generate(run_dir / "tls") if config.run.tls else None


def _ray_address(args: argparse.Namespace) -> tuple[str, str] | None:
    """The cluster ``shoal train`` joins and the option that named it; None: a Ray of its
    own (or --local)."""
    if args.local:
        return None
    if args.address:
        return "--address", args.address
    from_environment = os.environ.get("RAY_ADDRESS")
    return ("$RAY_ADDRESS", from_environment) if from_environment else None


def _check_ray_address(args: argparse.Namespace) -> None:
    """The first check of ``shoal train``, before the imports of the algorithms (torch),
    which take seconds of their own: a wrong address is said within seconds."""
    joining = _ray_address(args)
    if joining is not None:
        name, cluster = joining
        from shoal.launcher.ray_cluster import ClusterRefused, probe

        try:
            probe(cluster)
        except ClusterRefused as error:
            raise UsageError(f"{name}: {error}") from None


def _launch(args: argparse.Namespace, max_actors: int, actors: int) -> Launch:
    """How the run's components start: threads here (``--local``), or Ray actors, on a
    cluster joined now, before the run directory exists: an address that is not a Ray
    cluster's, or a cluster too small for ``actors`` and the services, is a usage error,
    said in seconds, and leaves nothing behind."""
    from shoal.launcher.launch import LocalLaunch, RayLaunch
    from shoal.launcher.ray_cluster import ClusterRefused

    if args.local:
        return LocalLaunch()
    try:
        return RayLaunch(args.address, max_actors, actors)
    except ClusterRefused as error:
        name, _ = _ray_address(args) or ("--address", "")
        raise UsageError(f"{name}: {error}") from None
