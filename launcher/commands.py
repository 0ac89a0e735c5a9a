"""What the ``shoal`` subcommands that run a piece of a run do once their command line is
parsed (``cli.py``), and the run configuration every command reads from its flags; ``shoal
train`` is ``train_command.py``, the commands that only show something are
``view_commands.py``. Each imports what it needs only when it runs; a bad value is a
UsageError, raised before the command creates anything."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.launcher.usage import UsageError, address, port, positive

if TYPE_CHECKING:  # the run's modules import torch: only when a command runs
    from shoal.launcher.config import TrainConfig


# --------------------------------------------------------------- the run configuration


def read_yaml(path: Path) -> Any:
    """What ``--config`` holds; a file that cannot be read or parsed is one line, with the
    line and column of the problem (PyYAML's own message spans five)."""
    import yaml

    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"--config: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--config: {path} is not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        raise UsageError(f"--config: {path} is not valid YAML {_yaml_problem(error)}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"--config: {path} is not valid YAML: "
                         f"{' '.join(str(error).split())}") from None


def _yaml_problem(error: Any) -> str:
    """``at line L, column C: problem (context from line K)``, 1-based as editors count
    (PyYAML's marks are 0-based)."""
    mark = error.problem_mark or error.context_mark
    where = f"at line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
    problem = error.problem or error.context or "cannot parse"
    context = ""
    if error.problem and error.context:
        context = f" ({error.context}"
        if error.context_mark is not None:
            context += f" from line {error.context_mark.line + 1}"
        context += ")"
    return f"{where}: {problem}{context}"


def run_config(args: argparse.Namespace, **extra_flags: object) -> TrainConfig:
    """The run configuration of every command that runs a piece of a run: ``--config``
    and the configuration flags this command has and was given (``launcher/config.py``)."""
    from shoal.launcher.config import resolve

    values = None
    if args.config is not None:
        values = read_yaml(args.config)
        if values is not None and not isinstance(values, dict):
            raise UsageError(f"--config: expected a mapping (the run configuration, or the "
                             f"algorithm's settings) in {args.config}")
    return resolve(values, {**given_flags(args), **extra_flags}, preset=not args.no_preset)


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {flag: getattr(args, dest) for flag, dest in args.config_flags.items()
            if getattr(args, dest) is not None}




# ------------------------------------------------------------------ the run's pieces




def tables(args: argparse.Namespace) -> int:
    import yaml

    config = run_config(args)
    print(yaml.safe_dump({"tables": [config.table.to_dict()]}, sort_keys=False), end="")
    return 0






def _token(args: argparse.Namespace) -> str:
    from shoal.protos.transport import read_or_create_token

    if args.token_file is not None:
        try:
            return read_or_create_token(args.token_file)
        except (OSError, ValueError) as error:
            raise UsageError(f"--token-file: {error}") from None
    token = os.environ.get("SHOAL_TOKEN", "")
    if not token:
        raise UsageError("--token-file or SHOAL_TOKEN: a run token is required "
                         "(--token-file creates one if the file does not exist)")
    return token


def replay_server(args: argparse.Namespace) -> int:
    from shoal.replay_service.config import ConfigError
    from shoal.replay_service.process import configure_logging, serve

    port("--port", args.port)
    port("--metrics-port", args.metrics_port)
    token = _token(args)
    # replay_service.config says a YAML error in PyYAML's five lines; read here, one line
    read_yaml(args.config)
    configure_logging()
    try:
        return serve(args.config, token=token, host=args.host, port=args.port,
                     checkpoint_dir=args.checkpoint_dir, address_file=args.address_file,
                     metrics_port=args.metrics_port)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def replay_demo(args: argparse.Namespace) -> int:
    from shoal.launcher.replay_demo import run_demo

    if args.items < 256:
        raise UsageError(f"--items: expected >= 256, got {args.items}")
    return run_demo(items=args.items, batches=args.batches)


def learner(args: argparse.Namespace) -> int:
    from shoal.launcher.components import LearnerComponent, Wiring
    from shoal.launcher.processes import run_learner
    from shoal.replay_service.process import configure_logging

    config = run_config(args)
    replay = address("--replay", args.replay)
    port("--port", args.port)
    port("--metrics-port", args.metrics_port)
    if args.resume and not (args.run_dir / "learner" / "learner.pt").exists():
        raise UsageError(f"--resume: no learner checkpoint in {args.run_dir}")
    token = _token(args)
    configure_logging()
    component = LearnerComponent(
        config, Wiring(token, args.host, run=args.run_dir.name), replay, str(args.run_dir),
        str(args.run_dir) if args.resume else None, port=args.port,
        metrics_port=args.metrics_port)
    return run_learner(component, address_file=args.address_file)


def actor(args: argparse.Namespace) -> int:
    from shoal.launcher.components import ActorComponent, Wiring
    from shoal.launcher.processes import run_actor
    from shoal.replay_service.process import configure_logging

    config = run_config(args)
    replay = address("--replay", args.replay)
    parameters = address("--parameters", args.parameters)
    actors = config.run.actors
    if not 0 <= args.index < actors:
        raise UsageError(f"--index: expected 0..{actors - 1}, got {args.index}")
    if args.total_env_steps is not None:
        positive("--total-env-steps", args.total_env_steps)
    port("--metrics-port", args.metrics_port)
    token = _token(args)
    configure_logging()
    component = ActorComponent(
        config, Wiring(token, run=args.run_name), args.index, actors, replay, parameters,
        max_env_steps=args.total_env_steps, metrics_port=args.metrics_port)
    return run_actor(component)


# ------------------------------------------------------------------ a running training


def scale(args: argparse.Namespace) -> int:
    import grpc

    from shoal.launcher.control import CONTROL_FILE, ControlClient

    positive("--actors", args.actors)
    try:
        client = ControlClient.of_run(args.run_dir)
    except FileNotFoundError:
        raise UsageError(f"RUN_DIR: no {CONTROL_FILE} in {args.run_dir} "
                         f"(not a running shoal train)") from None
    with client:
        try:
            response = client.scale(args.actors)
            status = client.status()
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                raise UsageError(f"RUN_DIR: the run in {args.run_dir} does not answer "
                                 f"(it ended?)") from None
            raise UsageError(error.details()) from None
    removed = ("" if response.actors >= response.previous else
               f"; the removed actors' writers flushed {response.removed_items_flushed:,} "
               f"items on leaving (over their lives: {response.removed_items_sent:,} sent, "
               f"{response.removed_items_stored:,} stored)")
    pending = ("" if not response.pending_actors else
               f" ({response.pending_actors} pending: not started by Ray yet, starting "
               f"or waiting for a free CPU; each trains once Ray places it)")
    print(f"actors {response.previous} -> {response.actors}{pending} at "
          f"{status.env_steps:,} env steps, {status.updates:,} updates{removed}")
    return 0
