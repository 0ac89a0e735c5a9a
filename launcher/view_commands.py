"""The ``shoal`` subcommands that show something and change nothing: the algorithms, their
presets and settings, a Prometheus configuration, a run's live view (``top``), its curves
(``plot``) and its policy played (``eval``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import signal
import sys
from pathlib import Path

from shoal.launcher.usage import UsageError, positive


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


def algos(args: argparse.Namespace) -> int:
    """Each registered algorithm: what it is (its module's first paragraph), the action
    spaces it acts in, what its actors collect and the replay table it trains from (with
    its defaults, on CartPole-v1 or Pendulum-v1)."""
    import textwrap

    from shoal.algorithms.registry import ALGORITHMS
    from shoal.launcher.config import resolve

    example = {"discrete": "CartPole-v1", "box": "Pendulum-v1"}
    for name, definition in sorted(ALGORITHMS.items()):
        spaces = sorted(definition.action_spaces)
        doc = sys.modules[definition.make_learner.__module__].__doc__ or ""
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
