"""What each ``shoal`` subcommand does once its command line is parsed (``cli.py``). Each
imports what it needs only when it runs; a bad value is a UsageError, raised before the
command creates anything."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.launcher.exit_codes import train_exit_code
from shoal.launcher.usage import UsageError, address, port, positive

if TYPE_CHECKING:  # the run's modules import torch: only when a command runs
    from shoal.launcher.config import TrainConfig
    from shoal.launcher.launch import Launch
    from shoal.protos.transport import Tls

STARTED = time.time()  # the command's start, for "seconds from the command's start"


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
    return resolve(values, {**_given_flags(args), **extra_flags}, preset=not args.no_preset)


def _given_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {flag: getattr(args, dest) for flag, dest in args.config_flags.items()
            if getattr(args, dest) is not None}


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
    flags = _given_flags(args)
    for flag, key in (("--algo", "algo"), ("--env", "env")):
        if flag in flags and flags.pop(flag) != tree.get(key):
            raise UsageError(f"{flag}: the run in {run} trains {key} {tree.get(key)}; "
                             f"--resume continues it as it was (leave {flag} out)")
    algorithm = tree.get("algorithm", {})
    if "env_steps_per_update" in algorithm:  # the rollout length follows the actors given now
        algorithm.pop("rollout_length", None)
    before = resolve(tree, {}, preset=False, check_learner=False).table
    config = resolve(tree, {**flags, **extra_flags}, preset=False)
    if (config.table.name, config.table.max_size, config.table.signature) != (
            before.name, before.max_size, before.signature):
        raise UsageError(f"{', '.join(flags)}: change the replay table the run's checkpoint "
                         f"holds ({before.name!r}, {before.max_size:,} items of "
                         f"{sorted(before.signature)}); --resume keeps it")
    return dataclasses.replace(config, settings=f"the run's own ({run / CONFIG})")


# ------------------------------------------------------------------------------ train


def train(args: argparse.Namespace) -> int:
    _check_ray_address(args)

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
    # the last check: after it, the run is created
    launch = _launch(args, config.run.max_actors, config.run.actors)
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
    summary, interrupted = run(config, run_dir, launch, tls=tls, resume=args.resume,
                               started=STARTED)
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


# ------------------------------------------------------------------ the run's pieces


def presets(args: argparse.Namespace) -> int:
    """``shoal presets``: the catalogue, one line per preset (its figure under it)."""
    import yaml

    from shoal.algorithms.presets import catalogue
    from shoal.algorithms.registry import ALGORITHMS

    if args.algo is not None and args.algo not in ALGORITHMS:
        raise UsageError(f"--algo: expected one of {sorted(ALGORITHMS)}, got {args.algo!r}")
    for algo in [args.algo] if args.algo else list(ALGORITHMS):
        for preset in catalogue(algo):
            print(f"{algo:<7} {preset.key:<27} {preset.measured}")
            if args.settings:
                text = yaml.safe_dump({k: v for k, v in preset.settings.items() if v},
                                      sort_keys=False, default_flow_style=None)
                print("\n".join("        " + line for line in text.splitlines()))
    return 0


def tables(args: argparse.Namespace) -> int:
    import yaml

    config = run_config(args)
    print(yaml.safe_dump({"tables": [config.table.to_dict()]}, sort_keys=False), end="")
    return 0


def algos(args: argparse.Namespace) -> int:
    """Each registered algorithm: what it is (its module's first paragraph), the action
    spaces it acts in, what its actors collect and the replay table it trains from (with
    its defaults, on CartPole-v1 or Pendulum-v1)."""
    import sys as system
    import textwrap

    from shoal.algorithms.registry import ALGORITHMS
    from shoal.launcher.config import resolve

    example = {"discrete": "CartPole-v1", "box": "Pendulum-v1"}
    for name, definition in sorted(ALGORITHMS.items()):
        spaces = sorted(definition.action_spaces)
        doc = system.modules[definition.make_learner.__module__].__doc__ or ""
        summary = " ".join(doc.strip().split("\n\n")[0].split())
        env = example["discrete" if "discrete" in spaces else "box"]
        table = resolve({"algo": name, "env": env}, preset=False, check_learner=False).table
        once = ", each item sampled once" if table.max_times_sampled == 1 else ""
        print(f"{name}")
        print(textwrap.fill(summary, 88, initial_indent="  ", subsequent_indent="  "))
        print(f"  actions: {' or '.join(spaces)}; actors collect "
              f"{definition.experience.value}")
        print(f"  table {table.name!r} ({env}, defaults): {table.selector.describe()}, up "
              f"to {table.max_size:,} items{once}, rate limiter {table.rate_limiter.kind}")
    print("each algorithm's settings, with defaults and docs: shoal config --algo NAME")
    return 0


def show_config(args: argparse.Namespace) -> int:
    from shoal.algorithms.registry import ALGORITHMS
    from shoal.launcher.config_help import describe

    if args.algo not in ALGORITHMS:
        raise UsageError(f"--algo: expected one of {sorted(ALGORITHMS)}, got {args.algo!r}")
    print(describe(args.algo))
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


def top(args: argparse.Namespace) -> int:
    from shoal.launcher.top import newest_run, view

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
        view(run_dir, args.interval, args.count)
    return 0


def prometheus_config(args: argparse.Namespace) -> int:
    import yaml

    from shoal.launcher.prometheus_config import prometheus_config as config

    parents = [parent.resolve() for parent in args.run_dir or [Path("runs")]]
    print(yaml.safe_dump(config(parents, ray=args.ray), sort_keys=False), end="")
    return 0


def plot(args: argparse.Namespace) -> int:
    from shoal.launcher.plot import plot as draw

    for run_dir in args.run_dirs:
        if not (run_dir / "events.jsonl").exists():
            raise UsageError(f"RUN_DIR: no events.jsonl in {run_dir}")
    for path in draw(args.run_dirs, args.out or args.run_dirs[0]):
        print(path)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from shoal.launcher.evaluate import evaluate as play

    positive("--episodes", args.episodes)
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed: expected 0..{2**32 - 1}, got {args.seed}")
    if args.video is not None and importlib.util.find_spec("moviepy") is None:
        raise UsageError("--video: recording needs moviepy (pip install -e '.[video]')")
    from gymnasium.error import DependencyNotInstalled

    try:
        played = play(args.checkpoint, args.episodes, seed=args.seed, latest=args.latest,
                      video_dir=args.video)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    except DependencyNotInstalled as error:  # the env cannot render frames here
        raise UsageError(f"--video: {error}") from None
    print(played.line())
    videos = sorted(args.video.glob("*.mp4")) if args.video is not None else []
    for video in videos:
        print(f"video {video}")
    if args.json:
        print(json.dumps({**played.as_dict(), "seed": args.seed,
                          "videos": [str(video) for video in videos]}))
    return 0
