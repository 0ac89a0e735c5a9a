"""The ``shoal`` command line: its parser, and ``main``. What each subcommand does is in
``train_command.py`` (``shoal train``), ``view_commands.py`` (the commands that only show
something) and ``commands.py`` (the rest); the run configuration its flags set is
``config.py``'s tree.

A bad argument or config value prints one line (``shoal: error: ...``) and exits 2,
without a traceback, and before the command creates anything (``shoal train``: no run
directory). ``shoal train`` exits 0 when it reached ``--target-return``, or the step
budget without a target; its other codes are ``exit_codes.py``'s, which ``--help`` lists.

Parsing imports no algorithm (they import torch, seconds of a command that may not need
it): the flags of the run configuration take their type and help from its fields only
when a value is converted or help is shown.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from shoal.launcher import commands, exit_codes, train_command, view_commands
from shoal.launcher.flags import FLAGS, METAVARS, SWITCHES, flag_dest
from shoal.launcher.usage import UsageError

ALGO_HELP = "one of the registered algorithms"
"""``--algo``'s help until it is shown; ``_Parser.format_help`` then names them."""
CONFIG_FLAG_HELP = "a field of the run configuration"
"""A configuration flag's help until it is shown: its field's docstring and default."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def format_help(self) -> str:
        """Names the registered algorithms, and each configuration flag's field doc and
        default, only when help is shown: both import torch."""
        from shoal.algorithms.registry import ALGORITHMS
        from shoal.launcher.config_help import flag_help

        for action in self._actions:
            if action.dest == "algo" and action.help == ALGO_HELP:
                action.help = f"{ALGO_HELP}: {', '.join(sorted(ALGORITHMS))}"
            if action.help == CONFIG_FLAG_HELP:
                action.help = flag_help(action.option_strings[0])
        return super().format_help()


class _FieldValue:
    """Converts a configuration flag's text as its field's type says (int, float, str)."""

    def __init__(self, flag: str) -> None:
        self.flag = flag
        self.__name__ = flag  # argparse names the type in its "invalid value" message

    def __call__(self, text: str) -> Any:
        import typing

        from shoal.launcher.config_help import field_type

        hint = field_type(*FLAGS[self.flag])
        kinds = [kind for kind in (typing.get_args(hint) or (hint,)) if kind is not type(None)]
        kind = kinds[0]
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None


def _config_flags(command: argparse.ArgumentParser, *flags: str) -> None:
    """Adds flags that set fields of the run configuration (``config.FLAGS``): unset, they
    leave the field to ``--config`` or its default."""
    dests = {}
    for flag in flags:
        dests[flag] = flag_dest(flag)
        if flag in SWITCHES:
            command.add_argument(flag, action="store_const", const=True,
                                 help=CONFIG_FLAG_HELP)
        else:
            command.add_argument(flag, type=_FieldValue(flag), metavar=METAVARS.get(flag),
                                 help=CONFIG_FLAG_HELP)
    command.set_defaults(config_flags=dests)


def _add_run_config(command: argparse.ArgumentParser, *flags: str) -> None:
    command.add_argument("--algo", help=ALGO_HELP)
    command.add_argument("--env", help="a gymnasium id, e.g. CartPole-v1")
    command.add_argument("--config", type=Path,
                         help="YAML of the run configuration (what --print-config prints, "
                              "or a flat mapping of the algorithm's settings), each value "
                              "checked against its field's type; flags override it")
    command.add_argument("--no-preset", action="store_true",
                         help="the algorithm's own defaults under --config and the flags, "
                              "not the preset for the env (`shoal presets` lists them) or "
                              "its family's defaults")
    _config_flags(command, "--seed", "--max-policy-lag", *flags)
    command.set_defaults(config_flags={"--algo": "algo", "--env": "env",
                                       **command.get_default("config_flags")})


def _add_metrics_port(command: argparse.ArgumentParser) -> None:
    command.add_argument("--metrics-port", type=int, default=0,
                         help="port of this process's /metrics (0: any free port, logged)")


def _add_token(command: argparse.ArgumentParser) -> None:
    command.add_argument("--token-file", type=Path,
                         help="the run token (created if missing); else $SHOAL_TOKEN")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shoal", description="Distributed actor-learner deep RL.")
    parser.add_argument("--version", action="version", version=f"shoal {version('shoal')}")
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    server = subcommands.add_parser("replay-server", help="run the replay service as a process")
    server.add_argument("--config", type=Path, required=True, help="tables YAML")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    server.add_argument("--port", type=int, default=0, help="0: any free port")
    _add_token(server)
    server.add_argument("--checkpoint-dir", type=Path,
                        help="overrides checkpoint.directory of the config")
    server.add_argument("--address-file", type=Path,
                        help="write host:port here once listening")
    _add_metrics_port(server)
    server.set_defaults(run=commands.replay_server)

    demo = subcommands.add_parser(
        "replay-demo", help="start a replay server, insert, sample and update priorities")
    demo.add_argument("--items", type=int, default=200_000, help="transitions to insert")
    demo.add_argument("--batches", type=int, default=400, help="batches of 256 to sample")
    demo.set_defaults(run=commands.replay_demo)

    train = subcommands.add_parser("train", help="train an agent", epilog=exit_codes.epilog(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_config(train, "--actors", "--max-actors", "--autoscale", "--envs-per-actor",
                    "--total-env-steps", "--target-return", "--return-window",
                    "--replay-checkpoint-every", "--checkpoint-every", "--tls",
                    "--deterministic")
    train.add_argument("--run-dir", type=Path, default=Path("runs"),
                       help="parent folder of the run directory")
    train.add_argument("--resume", type=Path, help="continue the run in this run directory")
    train.add_argument("--address", help="a Ray cluster to join, HOST:PORT of its GCS "
                       "(default: $RAY_ADDRESS, else a local Ray on this machine)")
    train.add_argument("--local", action="store_true",
                       help="every component as threads of this process")
    train.add_argument("--tls-cert", type=Path, help="PEM certificate for name 'shoal'")
    train.add_argument("--tls-key", type=Path, help="its PEM private key")
    train.add_argument("--json", action="store_true", help="end with a JSON summary line")
    train.add_argument("--print-config", action="store_true",
                       help="print the resolved run configuration as YAML (which --config "
                            "reads back) and exit, creating nothing")
    train.set_defaults(run=train_command.train)

    algos = subcommands.add_parser(
        "algos", help="list the algorithms: what each is, its action spaces and replay table")
    algos.set_defaults(run=view_commands.algos)

    config = subcommands.add_parser(
        "config", help="list every field of an algorithm's run configuration: type, default, "
                       "flag and doc")
    config.add_argument("--algo", required=True, help=ALGO_HELP)
    config.set_defaults(run=view_commands.show_config)

    presets = subcommands.add_parser(
        "presets", help="list the tuned settings shoal train picks by algorithm and env, "
                        "with the figure each was measured at")
    presets.add_argument("--algo", help="only this algorithm's")
    presets.add_argument("--settings", action="store_true",
                         help="also print each preset's settings")
    presets.set_defaults(run=view_commands.presets)

    tables = subcommands.add_parser(
        "tables", help="print the replay-server tables YAML an algorithm needs")
    _add_run_config(tables, "--envs-per-actor")
    tables.set_defaults(run=commands.tables)

    learner = subcommands.add_parser("learner", help="run a learner as a plain process")
    _add_run_config(learner, "--checkpoint-every", "--num-actors", "--envs-per-actor")
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
    _add_metrics_port(learner)
    learner.set_defaults(run=commands.learner)

    actor = subcommands.add_parser("actor", help="run an actor as a plain process")
    _add_run_config(actor, "--num-actors", "--envs-per-actor")
    _add_token(actor)
    actor.add_argument("--replay", required=True, help="the replay service's HOST:PORT")
    actor.add_argument("--parameters", required=True,
                       help="the learner's ParameterService HOST:PORT")
    actor.add_argument("--index", type=int, default=0, help="this actor's index, 0..N-1")
    actor.add_argument("--total-env-steps", type=int,
                       help="stop after this many env steps (default: run until a signal)")
    actor.add_argument("--run-name", default="", help="the run's name, a label of its metrics")
    _add_metrics_port(actor)
    actor.set_defaults(run=commands.actor)

    scale = subcommands.add_parser("scale", help="add or remove actors of a running training")
    scale.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's directory")
    scale.add_argument("--actors", type=int, required=True, help="the new actor count")
    scale.set_defaults(run=commands.scale)

    top = subcommands.add_parser("top", help="live view of a run: which side bounds it")
    top.add_argument("run_dir", type=Path, nargs="?",
                     help="a run directory (default: the newest under ./runs)")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between views")
    top.add_argument("--count", type=int, help="stop after this many views")
    top.set_defaults(run=view_commands.top)

    prometheus = subcommands.add_parser(
        "prometheus-config", help="print a Prometheus config that scrapes every run under "
                                  "the given run directories' parents")
    prometheus.add_argument("--run-dir", type=Path, action="append",
                            help="a parent of run directories, as shoal train's --run-dir "
                                 "(repeatable; default: runs)")
    prometheus.add_argument("--ray", action="store_true",
                            help="also scrape Ray's own processes (where Ray's metrics agent "
                                 "writes its discovery file)")
    prometheus.set_defaults(run=view_commands.prometheus_config)

    plot = subcommands.add_parser("plot", help="learning and throughput curves as PNGs")
    plot.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                      help="one or more run directories, overlaid")
    plot.add_argument("--out", type=Path, help="folder for the PNGs (default: the first run)")
    plot.set_defaults(run=view_commands.plot)

    evaluate = subcommands.add_parser("eval", help="play a checkpoint's greedy policy")
    evaluate.add_argument("checkpoint", type=Path,
                          help="a run directory (its learner/best.pt, the best greedy "
                               "evaluation during training, else learner.pt) or a .pt file")
    evaluate.add_argument("--episodes", type=int, default=10,
                          help="greedy episodes to play (default: 10)")
    evaluate.add_argument("--latest", action="store_true",
                          help="play learner.pt, the newest weights, not best.pt")
    evaluate.add_argument("--seed", type=int, default=12345,
                          help="episode i's env is reset with SEED + i (default: 12345)")
    evaluate.add_argument("--video", type=Path, metavar="DIR",
                          help="also record the first episode as an mp4 in DIR (envs that "
                               "render rgb_array frames; needs moviepy: the video extra)")
    evaluate.add_argument("--json", action="store_true", help="end with a JSON line")
    evaluate.set_defaults(run=view_commands.evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        args = build_parser().parse_args(argv)
        code = args.run(args)
    except UsageError as error:
        print(f"shoal: error: {error}", file=sys.stderr)
        code = exit_codes.USAGE
    sys.exit(code)


if __name__ == "__main__":
    main()
