"""The ``shoal`` command. Each subcommand imports what it needs only when it runs.

A bad argument or config value prints one line (``shoal: error: ...``) and exits 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn


class UsageError(Exception):
    """A bad argument or config value: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _token(args: argparse.Namespace) -> str:
    from shoal.replay_service.auth import read_or_create_token

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

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0..65535, got {args.port}")
    token = _token(args)
    configure_logging()
    try:
        return serve(args.config, token=token, host=args.host, port=args.port,
                     checkpoint_dir=args.checkpoint_dir, address_file=args.address_file)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _replay_demo(args: argparse.Namespace) -> int:
    from shoal.launcher.replay_demo import run_demo

    if args.items < 256:
        raise UsageError(f"--items: expected >= 256, got {args.items}")
    return run_demo(items=args.items, batches=args.batches)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shoal", description="Distributed actor-learner deep RL.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    server = commands.add_parser("replay-server", help="run the replay service as a process")
    server.add_argument("--config", type=Path, required=True, help="tables YAML")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    server.add_argument("--port", type=int, default=0, help="0: any free port")
    server.add_argument("--token-file", type=Path,
                        help="the run token (created if missing); else $SHOAL_TOKEN")
    server.add_argument("--checkpoint-dir", type=Path,
                        help="overrides checkpoint.directory of the config")
    server.add_argument("--address-file", type=Path,
                        help="write host:port here once listening")
    server.set_defaults(run=_replay_server)

    demo = commands.add_parser(
        "replay-demo", help="start a replay server, insert, sample and update priorities")
    demo.add_argument("--items", type=int, default=200_000, help="transitions to insert")
    demo.add_argument("--batches", type=int, default=400, help="batches of 256 to sample")
    demo.set_defaults(run=_replay_demo)
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
