"""The ``shoal`` command. Each subcommand imports what it needs only when it runs.

A bad argument or config value prints one line (``shoal: error: ...``) and exits 2,
without a traceback, and before the command creates anything (``shoal train``: no run
directory). ``shoal train`` exits 0 when it reached ``--target-return``, 1 at the step
budget (or when a component failed: then with the traceback), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from shoal.launcher.config_types import ConfigTypeError, checked_overrides

STARTED = time.time()  # the command's start, for "seconds from the command's start"


class UsageError(Exception):
    """A bad argument or config value: one line on stderr, exit code 2."""


ALGO_HELP = "one of the registered algorithms"
"""``--algo``'s help until it is shown; ``_Parser.format_help`` then names them."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def format_help(self) -> str:
        """Names the algorithms of the registry in ``--algo``'s help, only when help is
        shown: the registry imports torch, which parsing a command line does not need."""
        for action in self._actions:
            if action.dest == "algo" and action.help == ALGO_HELP:
                from shoal.algorithms.registry import ALGORITHMS

                action.help = f"{ALGO_HELP}: {', '.join(sorted(ALGORITHMS))}"
        return super().format_help()


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


def _replay_server(args: argparse.Namespace) -> int:
    from shoal.replay_service.config import ConfigError
    from shoal.replay_service.process import configure_logging, serve

    _port("--port", args.port)
    _port("--metrics-port", args.metrics_port)
    token = _token(args)
    # replay_service.config says a YAML error in PyYAML's five lines; read here, one line
    _read_yaml(args.config)
    configure_logging()
    try:
        return serve(args.config, token=token, host=args.host, port=args.port,
                     checkpoint_dir=args.checkpoint_dir, address_file=args.address_file,
                     metrics_port=args.metrics_port)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _replay_demo(args: argparse.Namespace) -> int:
    from shoal.launcher.replay_demo import run_demo

    if args.items < 256:
        raise UsageError(f"--items: expected >= 256, got {args.items}")
    return run_demo(items=args.items, batches=args.batches)


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{name}: expected a positive count, got {value}")
    return value


def _seed(value: int) -> int:
    """The learner seeds numpy's global generator with it, which takes 0..2**32-1."""
    if not 0 <= value < 2**32:
        raise UsageError(f"--seed: expected 0..{2**32 - 1}, got {value}")
    return value


def _algorithm_config(args: argparse.Namespace) -> Any:
    """The algorithm's config (``--config`` overrides applied) after checking ``--algo``,
    ``--config``, ``--env`` and ``--seed``: every command that runs a piece of a run
    starts here."""
    from shoal.actors.envs import UnknownEnv, probe_spec
    from shoal.algorithms.registry import ALGORITHMS

    algorithm = ALGORITHMS.get(args.algo)
    if algorithm is None:
        raise UsageError(f"--algo: expected one of {sorted(ALGORITHMS)}, got {args.algo!r}")
    _seed(args.seed)
    try:
        overrides = (checked_overrides(algorithm.config_type, _read_config(args.config))
                     if args.config else {})
    except ConfigTypeError as error:
        raise UsageError(str(error)) from None
    if args.max_policy_lag is not None:
        if "max_policy_lag" not in {f.name for f in dataclasses.fields(algorithm.config_type)}:
            raise UsageError(f"--max-policy-lag: only for on-policy algorithms (ppo, a2c), "
                             f"not {args.algo}")
        if args.max_policy_lag < 0:
            raise UsageError(f"--max-policy-lag: expected >= 0, got {args.max_policy_lag}")
        overrides["max_policy_lag"] = args.max_policy_lag
    try:  # the ranges the config dataclass checks itself (its __post_init__)
        config = algorithm.config_type(**overrides)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--config: {error}") from None
    try:
        spec = probe_spec(args.env)
    except UnknownEnv as error:
        raise UsageError(str(error)) from None
    kind = "discrete" if spec.discrete else "box"
    if kind not in algorithm.action_spaces:
        raise UsageError(f"--algo: {args.algo} acts in {' or '.join(algorithm.action_spaces)} "
                         f"action spaces; {args.env} has a {kind} one")
    _check_learner_builds(args.algo, algorithm, config, spec)
    return config


def _check_learner_builds(algo: str, algorithm: Any, config: Any, spec: Any) -> None:
    """Builds the learner once on the CPU (milliseconds for these networks), so that a value
    its networks or optimizer refuse (torch checks learning rates, for one) stops the
    command here and not in the learner of a started run."""
    import torch

    try:
        algorithm.make_learner(config, spec, torch.device("cpu"))
    except (ValueError, ArithmeticError) as error:
        raise UsageError(f"--config: {algo}'s learner refuses these settings: "
                         f"{type(error).__name__}: {error}") from None


def _table(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """The replay table of the algorithm, seeded as ``shoal train`` seeds its own."""
    from shoal.actors.envs import probe_spec
    from shoal.algorithms.registry import ALGORITHMS

    table = ALGORITHMS[args.algo].table(config, probe_spec(args.env), args.envs_per_actor)
    return {**table, "seed": args.seed}


def _port(name: str, value: int) -> int:
    if not 0 <= value <= 65535:
        raise UsageError(f"{name}: expected 0..65535, got {value}")
    return value


def _address(name: str, value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise UsageError(f"{name}: expected HOST:PORT, got {value!r}")
    return value


def _train(args: argparse.Namespace) -> int:
    import json

    _check_ray_address(args)

    from shoal.launcher.training import TrainSettings, run, write_config

    _positive("--envs-per-actor", args.envs_per_actor)
    _positive("--total-env-steps", args.total_env_steps)
    _positive("--return-window", args.return_window)
    _positive("--checkpoint-every", args.checkpoint_every)
    if not args.replay_checkpoint_every >= 0:
        raise UsageError(f"--replay-checkpoint-every: expected seconds >= 0, "
                         f"got {args.replay_checkpoint_every}")
    config = _algorithm_config(args)
    autoscale = _autoscale_range(args)
    actors = args.actors if args.actors is not None else autoscale.low if autoscale else 2
    _positive("--actors", actors)
    max_actors = autoscale.high if autoscale else args.max_actors
    if autoscale and not autoscale.low <= actors <= autoscale.high:
        raise UsageError(f"--actors: expected within --autoscale {autoscale}, got {actors}")
    if max_actors < actors:
        raise UsageError(f"--max-actors: expected >= --actors ({actors}), got {max_actors}")
    if args.resume is not None and not (args.resume / "learner" / "learner.pt").exists():
        raise UsageError(f"--resume: no learner checkpoint in {args.resume}")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert/--tls-key: give both, or neither")
    given_tls = _given_tls(args)
    launch = _launch(args, max_actors, actors)  # the last check: after it, the run is created
    run_dir = args.resume or _new_run_dir(args)
    tls = given_tls or _generated_tls(args, run_dir)
    settings = TrainSettings(
        algo=args.algo, env_id=args.env, actors=actors, max_actors=max_actors,
        autoscale=autoscale, envs_per_actor=args.envs_per_actor,
        replay_checkpoint_seconds=args.replay_checkpoint_every,
        learner_checkpoint_updates=args.checkpoint_every, tls=tls,
        seed=args.seed, total_env_steps=args.total_env_steps, target_return=args.target_return,
        return_window=args.return_window, run_dir=run_dir, resume=args.resume, config=config)
    write_config(run_dir, settings)
    print(f"run directory {run_dir}", file=sys.stderr, flush=True)
    # SIGTERM ends the run as Ctrl-C does: components stopped, checkpoint and summary written
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    summary, interrupted = run(settings, run_dir, local=args.local, launch=launch,
                               started=STARTED)
    print(summary.line(interrupted, settings.return_window))
    if args.json:
        print(json.dumps(dataclasses.asdict(summary)))
    return 130 if interrupted else 0 if summary.reached else 1


def _given_tls(args: argparse.Namespace) -> Any:
    """``--tls-cert``/``--tls-key`` read before anything is created; None without them."""
    from shoal.protos.transport import Tls

    if args.tls_cert is None:
        return None
    try:
        return Tls.from_files(args.tls_cert, args.tls_key)
    except OSError as error:
        raise UsageError(f"--tls-cert/--tls-key: {error}") from None


def _generated_tls(args: argparse.Namespace, run_dir: Path) -> Any:
    from shoal.protos.transport import Tls

    return Tls.generate(run_dir / "tls") if args.tls else None


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
        name, address = joining
        from shoal.launcher.ray_cluster import ClusterRefused, probe

        try:
            probe(address)
        except ClusterRefused as error:
            raise UsageError(f"{name}: {error}") from None


def _launch(args: argparse.Namespace, max_actors: int, actors: int) -> Any:
    """How the run's components start: threads here (``--local``), or Ray actors, on a
    cluster joined now, before the run directory exists: an address that is not a Ray
    cluster's, or a cluster too small for ``actors`` and the services, is a usage error,
    said in seconds, and leaves nothing behind."""
    from shoal.launcher.ray_cluster import ClusterRefused
    from shoal.launcher.training import LocalLaunch, RayLaunch

    if args.local:
        return LocalLaunch()
    try:
        return RayLaunch(args.address, max_actors, actors)
    except ClusterRefused as error:
        name, _ = _ray_address(args) or ("--address", "")
        raise UsageError(f"{name}: {error}") from None


def _scale(args: argparse.Namespace) -> int:
    import grpc

    from shoal.launcher.control import CONTROL_FILE, ControlClient

    _positive("--actors", args.actors)
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
               f"; removed actors handed {response.removed_items_sent:,} items to their "
               f"writers, {response.removed_items_stored:,} stored")
    pending = ("" if not response.pending_actors else
               f" ({response.pending_actors} pending: not started by Ray yet, starting "
               f"or waiting for a free CPU; each trains once Ray places it)")
    print(f"actors {response.previous} -> {response.actors}{pending} at "
          f"{status.env_steps:,} env steps, {status.updates:,} updates{removed}")
    return 0


def _autoscale_range(args: argparse.Namespace) -> Any:
    from shoal.launcher.autoscale import AutoscaleRange
    from shoal.launcher.training import fixed_actor_count

    if args.autoscale is None:
        return None
    try:
        bounds = AutoscaleRange.parse(args.autoscale)
    except ValueError as error:
        raise UsageError(f"--autoscale: {error}") from None
    refused = fixed_actor_count(args.algo)
    if refused is not None:
        raise UsageError(f"--autoscale: {refused}")
    return bounds


def _new_run_dir(args: argparse.Namespace) -> Path:
    """``<run-dir>/<algo>-<env>-<time>-s<seed>``, never one that exists already."""
    stem = (f"{args.algo}-{args.env.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
            f"-s{args.seed}")
    candidate, suffix = args.run_dir / stem, 1
    while candidate.exists():
        suffix += 1
        candidate = args.run_dir / f"{stem}-{suffix}"
    return candidate


def _read_yaml(path: Path) -> Any:
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


def _read_config(path: Path) -> dict:
    value = _read_yaml(path)
    if not isinstance(value, dict):
        raise UsageError(f"--config: expected a mapping of algorithm settings in {path}")
    return value


def _tables(args: argparse.Namespace) -> int:
    import yaml

    _positive("--envs-per-actor", args.envs_per_actor)
    config = _algorithm_config(args)
    print(yaml.safe_dump({"tables": [_table(args, config)]}, sort_keys=False), end="")
    return 0


def _learner(args: argparse.Namespace) -> int:
    from shoal.launcher.components import LearnerComponent
    from shoal.launcher.processes import run_learner
    from shoal.replay_service.process import configure_logging

    config = _algorithm_config(args)
    replay = _address("--replay", args.replay)
    _positive("--checkpoint-every", args.checkpoint_every)
    _positive("--num-actors", args.num_actors)
    _positive("--envs-per-actor", args.envs_per_actor)
    _port("--port", args.port)
    _port("--metrics-port", args.metrics_port)
    if args.resume and not (args.run_dir / "learner" / "learner.pt").exists():
        raise UsageError(f"--resume: no learner checkpoint in {args.run_dir}")
    token = _token(args)
    configure_logging()
    component = LearnerComponent(
        args.algo, args.env, dataclasses.asdict(config), token, args.host, replay,
        _table(args, config)["name"], str(args.run_dir),
        str(args.run_dir) if args.resume else None,
        port=args.port, checkpoint_every=args.checkpoint_every, run=args.run_dir.name,
        metrics_port=args.metrics_port, num_actors=args.num_actors, seed=args.seed)
    return run_learner(component, address_file=args.address_file)


def _actor(args: argparse.Namespace) -> int:
    from shoal.launcher.components import ActorComponent
    from shoal.launcher.processes import run_actor
    from shoal.replay_service.process import configure_logging

    config = _algorithm_config(args)
    replay = _address("--replay", args.replay)
    parameters = _address("--parameters", args.parameters)
    _positive("--num-actors", args.num_actors)
    _positive("--envs-per-actor", args.envs_per_actor)
    if not 0 <= args.index < args.num_actors:
        raise UsageError(f"--index: expected 0..{args.num_actors - 1}, got {args.index}")
    if args.total_env_steps is not None:
        _positive("--total-env-steps", args.total_env_steps)
    _port("--metrics-port", args.metrics_port)
    token = _token(args)
    configure_logging()
    component = ActorComponent(
        args.algo, args.env, dataclasses.asdict(config), args.index, args.num_actors,
        args.envs_per_actor, args.seed, token, replay, _table(args, config)["name"],
        parameters, max_env_steps=args.total_env_steps, run=args.run_name,
        metrics_port=args.metrics_port)
    return run_actor(component)


def _top(args: argparse.Namespace) -> int:
    from shoal.launcher.top import newest_run, watch

    run_dir = args.run_dir or newest_run(Path("runs"))
    if run_dir is None:
        raise UsageError("no run with metrics under ./runs; give RUN_DIR")
    if not (run_dir / "prometheus_targets.json").exists():
        raise UsageError(f"RUN_DIR: no prometheus_targets.json in {run_dir}")
    if args.interval <= 0:
        raise UsageError(f"--interval: expected seconds > 0, got {args.interval}")
    # Ctrl-C (SIGINT) is how a live view ends, even where it was started with SIGINT
    # ignored, as a shell does for a background job's children.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        watch(run_dir, args.interval, args.count)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from shoal.launcher.plot import plot

    for run_dir in args.run_dirs:
        if not (run_dir / "events.jsonl").exists():
            raise UsageError(f"RUN_DIR: no events.jsonl in {run_dir}")
    for path in plot(args.run_dirs, args.out or args.run_dirs[0]):
        print(path)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from shoal.launcher.evaluate import evaluate

    _positive("--episodes", args.episodes)
    try:
        mean_return = evaluate(args.checkpoint, args.episodes)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    print(f"mean return {mean_return:.1f} over {args.episodes} episodes")
    if args.json:
        print(json.dumps({"mean_return": mean_return, "episodes": args.episodes}))
    return 0


SEED_HELP = ("the run's seed, the same in each of its processes: the learner seeds torch "
             "and numpy with it, the replay table its sampling, actor i its envs and "
             "exploration with SEED + 1000 i")


def _add_algorithm(command: argparse.ArgumentParser) -> None:
    command.add_argument("--algo", required=True, help=ALGO_HELP)
    command.add_argument("--env", required=True, help="a gymnasium id, e.g. CartPole-v1")
    command.add_argument("--config", type=Path,
                         help="YAML of algorithm settings to override, checked against "
                              "the types of the algorithm's config")
    command.add_argument("--max-policy-lag", type=int, metavar="K",
                         help="ppo/a2c: collect asynchronously, train only on rollouts at "
                              "most K weight versions old (default: synchronous)")
    command.add_argument("--seed", type=int, default=0, help=f"{SEED_HELP} (default 0)")


def _add_metrics_port(command: argparse.ArgumentParser) -> None:
    command.add_argument("--metrics-port", type=int, default=0,
                         help="port of this process's /metrics (0: any free port, logged)")


def _add_token(command: argparse.ArgumentParser) -> None:
    command.add_argument("--token-file", type=Path,
                         help="the run token (created if missing); else $SHOAL_TOKEN")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shoal", description="Distributed actor-learner deep RL.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    server = commands.add_parser("replay-server", help="run the replay service as a process")
    server.add_argument("--config", type=Path, required=True, help="tables YAML")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    server.add_argument("--port", type=int, default=0, help="0: any free port")
    _add_token(server)
    server.add_argument("--checkpoint-dir", type=Path,
                        help="overrides checkpoint.directory of the config")
    server.add_argument("--address-file", type=Path,
                        help="write host:port here once listening")
    _add_metrics_port(server)
    server.set_defaults(run=_replay_server)

    demo = commands.add_parser(
        "replay-demo", help="start a replay server, insert, sample and update priorities")
    demo.add_argument("--items", type=int, default=200_000, help="transitions to insert")
    demo.add_argument("--batches", type=int, default=400, help="batches of 256 to sample")
    demo.set_defaults(run=_replay_demo)

    train = commands.add_parser("train", help="train an agent")
    _add_algorithm(train)
    train.add_argument("--actors", type=int,
                       help="actor processes (default: 2, or MIN of --autoscale)")
    train.add_argument("--max-actors", type=int, default=16,
                       help="the most `shoal scale` may ask for (dqn, sac)")
    train.add_argument("--autoscale", metavar="MIN:MAX",
                       help="adjust the actor count between MIN and MAX to keep the learner "
                            "busy without actors queueing for it (dqn, sac)")
    train.add_argument("--envs-per-actor", type=int, default=8, help="vector env size")
    train.add_argument("--total-env-steps", type=int, default=200_000, help="step budget")
    train.add_argument("--target-return", type=float,
                       help="stop once the mean of the last --return-window episodes "
                            "reaches this")
    train.add_argument("--return-window", type=int, default=20,
                       help="training episodes the target's mean is over")
    train.add_argument("--run-dir", type=Path, default=Path("runs"),
                       help="parent folder of the run directory")
    train.add_argument("--resume", type=Path, help="continue the run in this run directory")
    train.add_argument("--address", help="a Ray cluster to join, HOST:PORT of its GCS "
                       "(default: $RAY_ADDRESS, else a local Ray on this machine)")
    train.add_argument("--local", action="store_true",
                       help="every component as threads of this process")
    train.add_argument("--replay-checkpoint-every", type=float, default=30.0,
                       metavar="SECONDS", help="replay checkpoints, which a restarted replay "
                       "service resumes from (0: only at the end)")
    train.add_argument("--checkpoint-every", type=int, default=2_000, metavar="UPDATES",
                       help="learner checkpoints, which a restarted learner resumes from")
    train.add_argument("--tls", action="store_true",
                       help="TLS on every channel of the run, with a certificate generated for "
                            "it (RUN_DIR/tls/) unless --tls-cert/--tls-key give one")
    train.add_argument("--tls-cert", type=Path, help="PEM certificate for name 'shoal'")
    train.add_argument("--tls-key", type=Path, help="its PEM private key")
    train.add_argument("--json", action="store_true", help="end with a JSON summary line")
    train.set_defaults(run=_train)

    tables = commands.add_parser(
        "tables", help="print the replay-server tables YAML an algorithm needs")
    _add_algorithm(tables)
    tables.add_argument("--envs-per-actor", type=int, default=8,
                        help="vector env size (rollout items hold every env of an actor)")
    tables.set_defaults(run=_tables)

    learner = commands.add_parser("learner", help="run a learner as a plain process")
    _add_algorithm(learner)
    _add_token(learner)
    learner.add_argument("--replay", required=True, help="the replay service's HOST:PORT")
    learner.add_argument("--run-dir", type=Path, required=True,
                         help="checkpoints go to RUN_DIR/learner")
    learner.add_argument("--resume", action="store_true",
                         help="continue from the checkpoint in RUN_DIR/learner")
    learner.add_argument("--host", default="127.0.0.1",
                         help="address the ParameterService binds (loopback)")
    learner.add_argument("--port", type=int, default=0, help="0: any free port")
    learner.add_argument("--address-file", type=Path,
                         help="write the ParameterService's host:port here once listening")
    learner.add_argument("--checkpoint-every", type=int, default=2_000,
                         help="updates between checkpoints (and one at exit)")
    learner.add_argument("--num-actors", type=int, default=1,
                         help="actors of the run (on-policy: rollouts per update)")
    learner.add_argument("--envs-per-actor", type=int, default=8, help="their vector env size")
    _add_metrics_port(learner)
    learner.set_defaults(run=_learner)

    actor = commands.add_parser("actor", help="run an actor as a plain process")
    _add_algorithm(actor)
    _add_token(actor)
    actor.add_argument("--replay", required=True, help="the replay service's HOST:PORT")
    actor.add_argument("--parameters", required=True,
                       help="the learner's ParameterService HOST:PORT")
    actor.add_argument("--index", type=int, default=0, help="this actor's index, 0..N-1")
    actor.add_argument("--num-actors", type=int, default=1,
                       help="N: the actors of the run (sets each one's exploration)")
    actor.add_argument("--envs-per-actor", type=int, default=8, help="vector env size")
    actor.add_argument("--total-env-steps", type=int,
                       help="stop after this many env steps (default: run until a signal)")
    actor.add_argument("--run-name", default="", help="the run's name, a label of its metrics")
    _add_metrics_port(actor)
    actor.set_defaults(run=_actor)

    scale = commands.add_parser("scale", help="add or remove actors of a running training")
    scale.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's directory")
    scale.add_argument("--actors", type=int, required=True, help="the new actor count")
    scale.set_defaults(run=_scale)

    top = commands.add_parser("top", help="live view of a run: which side bounds it")
    top.add_argument("run_dir", type=Path, nargs="?",
                     help="a run directory (default: the newest under ./runs)")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between views")
    top.add_argument("--count", type=int, help="stop after this many views")
    top.set_defaults(run=_top)

    plot = commands.add_parser("plot", help="learning and throughput curves as PNGs")
    plot.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                      help="one or more run directories, overlaid")
    plot.add_argument("--out", type=Path, help="folder for the PNGs (default: the first run)")
    plot.set_defaults(run=_plot)

    evaluate = commands.add_parser("eval", help="play a checkpoint's greedy policy")
    evaluate.add_argument("checkpoint", type=Path, help="a run directory or learner.pt")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--json", action="store_true", help="end with a JSON line")
    evaluate.set_defaults(run=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        args = build_parser().parse_args(argv)
        code = args.run(args)
    except UsageError as error:
        print(f"shoal: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
