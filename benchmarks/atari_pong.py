"""Atari throughput: env frames/s, learner updates/s and the replay table's bytes per stored
item, compressed (as the replay service holds it) and uncompressed (from the signature).

    python benchmarks/atari_pong.py [--algo dqn [ppo ...]] [--actors 2] [--envs-per-actor 4] \
        [--seconds 120] [--env ALE/Pong-v5] [--defaults | --config FILE] [--local] \
        [--scrape-interval 0.25] [--run-dir DIR] [--json]

Per algorithm, a real ``shoal train --algo ALGO --env ALE/Pong-v5 --actors N --json`` (a
Ray launch unless --local) with a step budget too large to matter, ended with SIGTERM once
its events.jsonl throughput lines span --seconds after the first one (so Ray's start-up and
the first env resets are not in the figures; the command itself runs longer). shoal ends
cleanly on SIGTERM (exit 130, checkpoint and JSON summary).

- env steps/s and updates/s: the cumulative counters' differences between the first and
  the last throughput line over their timestamps. env frames/s = env steps/s x the frame
  skip of the Atari preprocessing (``actors/envs.py``: 4 emulator frames per env step, the
  ALE env itself made with frameskip=1), read from the env's wrappers.
- bytes per item, compressed: ``shoal_replay_stored_bytes / shoal_replay_items`` scraped
  from the replay service's /metrics every --scrape-interval (the table counts compressed
  fields at their stored size and the others at their raw size), summed over the scrapes
  that found items. A DQN table only grows; PPO's rollout queue is drained by every update,
  so its figure comes from the moments a rollout waits there for the other actors'.
- bytes per item, uncompressed: the sum of ``row_bytes`` over the table's signature, the
  table built from the run's own settings (config.json) exactly as shoal builds it.
- steps per item: env steps one item holds (a DQN transition: 1; a PPO rollout:
  rollout_length x envs per actor), for bytes per env step.

Settings: unless --defaults, each algorithm runs with the Atari-shaped settings of
``ATARI_SETTINGS`` (Nature DQN's one update of 32 per 4 env steps; CleanRL's PPO for Atari)
over shoal's defaults, which are tuned for CartPole (DQN: batches of 256, 32 samples per
insert, so a CPU learner allows only a few env steps/s). --config FILE replaces them for
every algorithm listed. 2 actors x 4 envs are the references' 8 envs.

Rates are printed over the whole measured span and over its second half: a DQN run fills
its table to min_size_to_sample first and then runs ahead of the learner by the rate
limiter's tolerance, so the second half is nearer a long run's steady state.

With --json the last line is a JSON list, one object per algorithm: algo, env, actors,
envs_per_actor, settings (the overrides passed), frame_skip, seconds (measured span),
env_steps_per_s, env_frames_per_s, updates_per_s, last_half (seconds, env_steps_per_s,
env_frames_per_s, updates_per_s over the span's second half), items_stored (at the last
throughput line), items_inserted, bytes_per_item_compressed, bytes_per_item_uncompressed,
compression_ratio, steps_per_item, scrapes_with_items, exit_code, summary (shoal's JSON
summary), run_dir; null when unmeasured. Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import live_run

from shoal.launcher.exit_codes import INTERRUPTED, TARGET_MISSED, TRAINED

START_UP_SECONDS = 240.0    # give up on a run with no throughput line by then
TERM_GRACE = 180.0          # seconds for shoal to stop, checkpoint and summarise on SIGTERM

ATARI_SETTINGS: dict[str, dict[str, Any]] = {
    # Nature DQN's shape: batches of 32, one update per 4 env steps (8 samples per insert),
    # a constant small step size, epsilon over 1M frames (250k env steps, 125k per each of
    # 2 actors); a 100k table (~110 MB at the ~1.1 kB per lz4-compressed
    # transition measured on Pong, 5.6 GB uncompressed) that samples from 5k transitions.
    "dqn": {"batch_size": 32, "samples_per_insert": 8.0, "learning_rate": 1e-4,
            "learning_rate_final": 1e-4, "buffer_size": 100_000, "min_size_to_sample": 5_000,
            "error_buffer": 8.0 * 2048,
            "target_update_interval": 2_000, "epsilon_decay_steps": 125_000},
    # CleanRL's ppo_atari: 128-step rollouts, 4 epochs of 4 minibatches, clip 0.1,
    # entropy bonus 0.01, gamma 0.99, lambda 0.95, lr 2.5e-4.
    "ppo": {"rollout_length": 128, "update_epochs": 4, "num_minibatches": 4,
            "learning_rate": 2.5e-4, "gamma": 0.99, "gae_lambda": 0.95, "clip_coef": 0.1,
            "entropy_coef": 0.01},
    # the A2C paper's Atari shape: 5-step rollouts, RMSprop 7e-4 (A2CConfig's defaults)
    "a2c": {},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", nargs="+", default=["dqn"], help="dqn, ppo and/or a2c")
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--envs-per-actor", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="measured span of each run, after its first throughput line")
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument("--defaults", action="store_true",
                          help="the algorithms' own (CartPole) defaults, not ATARI_SETTINGS")
    settings.add_argument("--config", type=Path, help="settings YAML for every algorithm")
    parser.add_argument("--local", action="store_true", help="passed through to shoal train")
    parser.add_argument("--scrape-interval", type=float, default=0.25,
                        help="seconds between scrapes of the replay service's /metrics")
    parser.add_argument("--run-dir", type=Path,
                        help="keep the runs under this folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="end with a JSON list")
    return parser.parse_args(argv)


# ------------------------------------------------------------------ what the run is


def settings_for(args: argparse.Namespace, algo: str) -> dict[str, Any]:
    """The algorithm settings this benchmark passes to shoal train."""
    import yaml

    if args.config is not None:
        return dict(yaml.safe_load(args.config.read_text()) or {})
    return {} if args.defaults else dict(ATARI_SETTINGS.get(algo, {}))


def frame_skip(env_id: str) -> int:
    """Emulator frames per env step: the AtariPreprocessing wrapper's frame skip times the
    ALE env's own (shoal makes it with frameskip=1), read from the env shoal trains on."""
    from gymnasium.wrappers import AtariPreprocessing

    from shoal.actors.envs import make_env

    env = make_env(env_id)
    try:
        skip, layer = 1, env
        while True:
            if isinstance(layer, AtariPreprocessing):
                skip *= int(layer.frame_skip)
            inner = getattr(layer, "env", None)
            if inner is None:
                own = getattr(layer, "_frameskip", 1)
                return skip * (own if isinstance(own, int) else 1)
            layer = inner
    finally:
        env.close()


def item_layout(run_dir: Path) -> tuple[int, int]:
    """(uncompressed bytes per item, env steps per item) of the run's table: built from the
    run's config.json as shoal builds it, its signature's row bytes summed."""
    from shoal.algorithms.base import RolloutItems
    from shoal.launcher.config import resolve

    config = resolve(json.loads((run_dir / "config.json").read_text()), check_learner=False)
    raw = sum(field.row_bytes for field in config.table.signature.values())
    items = config.definition.items(config.algorithm)
    envs = config.collection.envs_per_actor
    steps = envs * items.length if isinstance(items, RolloutItems) else 1
    return raw, steps


# ------------------------------------------------------------------- watching a run


@dataclass
class Watched:
    """What was seen of one run while it went."""

    run_dir: Path | None = None
    lines: list[dict[str, Any]] | None = None   # throughput events
    items: float = 0.0                          # summed over scrapes that found items
    stored_bytes: float = 0.0
    scrapes_with_items: int = 0


def find_run_dir(parent: Path) -> Path | None:
    """shoal names the run directory (algo, env, time); it is the one under our parent."""
    found = [path.parent for path in parent.glob("*/config.json")]
    return found[0] if found else None


def scrape_replay(run_dir: Path, watched: Watched) -> None:
    """Adds one scrape of the replay table's items and stored bytes, when it holds items."""
    from shoal.launcher.rates import read_targets, scrape

    try:
        address = read_targets(run_dir)["replay"]
    except (OSError, KeyError, ValueError):  # not written yet, or being written
        return
    samples = scrape({"replay": address}, timeout=1.0)
    items = samples.get(("shoal_replay_items", "replay"), 0.0)
    if items > 0:
        watched.items += items
        watched.stored_bytes += samples.get(("shoal_replay_stored_bytes", "replay"), 0.0)
        watched.scrapes_with_items += 1


def train_command(args: argparse.Namespace, algo: str, parent: Path,
                  settings: dict[str, Any]) -> list[str]:
    command = [*live_run.SHOAL, "train", "--algo", algo, "--env", args.env,
               "--actors", str(args.actors), "--envs-per-actor", str(args.envs_per_actor),
               "--total-env-steps", str(live_run.HUGE_BUDGET), "--run-dir", str(parent), "--json"]
    if settings:
        path = parent / "settings.yaml"
        path.write_text(json.dumps(settings))  # JSON is YAML
        command += ["--config", str(path)]
    if args.local:
        command.append("--local")
    return command


def watch_run(args: argparse.Namespace, command: list[str], parent: Path,
              ) -> tuple[Watched, int, dict[str, Any] | None]:
    """Runs shoal train until its throughput lines span --seconds, scraping the replay
    service as it goes, then SIGTERMs it. Returns what was seen, the exit code and shoal's
    JSON summary (None if it printed none)."""
    out, log = parent / "train.out", parent / "train.log"
    with out.open("w") as stdout, log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    watched, started = Watched(), time.monotonic()
    try:
        while process.poll() is None:
            time.sleep(args.scrape_interval)
            watched.run_dir = watched.run_dir or find_run_dir(parent)
            if watched.run_dir is None:
                continue
            scrape_replay(watched.run_dir, watched)
            lines = live_run.read_events(watched.run_dir, "throughput")
            if lines and lines[-1]["time"] - lines[0]["time"] >= args.seconds:
                break
            if not lines and time.monotonic() - started > START_UP_SECONDS:
                print(f"no throughput line after {START_UP_SECONDS:.0f}s", file=sys.stderr)
                break
    finally:
        live_run.terminate(process, TERM_GRACE)
    if watched.run_dir is not None:
        watched.lines = live_run.read_events(watched.run_dir, "throughput")
    if process.returncode not in (INTERRUPTED, TRAINED, TARGET_MISSED):
        tail = "\n".join(log.read_text().splitlines()[-10:])
        print(f"shoal train exited {process.returncode}:\n{tail}", file=sys.stderr)
    return watched, process.returncode, last_json(out.read_text())


def last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else None
    return None


# ------------------------------------------------------------------------ the figures


def rate(lines: list[dict[str, Any]], key: str) -> float | None:
    """A cumulative counter's rate between the first and the last throughput line."""
    if len(lines) < 2 or lines[-1]["time"] <= lines[0]["time"]:
        return None
    return (lines[-1][key] - lines[0][key]) / (lines[-1]["time"] - lines[0]["time"])


def last_half(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The throughput lines of the span's second half. A DQN run spends its first tens of
    seconds filling the table to min_size_to_sample and then running ahead of the learner by
    the rate limiter's tolerance, with actors free of it; the second half is nearer the
    steady state a long run settles into."""
    if len(lines) < 2:
        return lines
    middle = (lines[0]["time"] + lines[-1]["time"]) / 2
    return [line for line in lines if line["time"] >= middle]


def rates(lines: list[dict[str, Any]], skip: int) -> dict[str, float | None]:
    steps_per_s = rate(lines, "env_steps")
    return {"seconds": lines[-1]["time"] - lines[0]["time"] if len(lines) >= 2 else None,
            "env_steps_per_s": steps_per_s,
            "env_frames_per_s": None if steps_per_s is None else steps_per_s * skip,
            "updates_per_s": rate(lines, "updates")}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def measure(args: argparse.Namespace, algo: str, parent: Path, skip: int) -> dict[str, Any]:
    parent.mkdir(parents=True)
    settings = settings_for(args, algo)
    watched, code, summary = watch_run(args, train_command(args, algo, parent, settings),
                                       parent)
    lines = watched.lines or []
    raw, steps_per_item = item_layout(watched.run_dir) if watched.run_dir else (None, None)
    compressed = ratio(watched.stored_bytes, watched.items)
    return {
        "algo": algo, "env": args.env, "actors": args.actors,
        "envs_per_actor": args.envs_per_actor, "settings": settings, "frame_skip": skip,
        **rates(lines, skip), "last_half": rates(last_half(lines), skip),
        "items_stored": lines[-1]["replay_size"] if lines else None,
        "items_inserted": lines[-1]["replay_inserted"] if lines else None,
        "bytes_per_item_compressed": compressed, "bytes_per_item_uncompressed": raw,
        "compression_ratio": ratio(raw, compressed), "steps_per_item": steps_per_item,
        "scrapes_with_items": watched.scrapes_with_items, "exit_code": code,
        "summary": summary,
        "run_dir": str(watched.run_dir) if watched.run_dir else None,
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def print_rows(rows: list[dict[str, Any]]) -> None:
    first = rows[0]
    print(f"shoal train --env {first['env']} --actors {first['actors']} --envs-per-actor "
          f"{first['envs_per_actor']}; env frames = env steps x frame skip "
          f"{first['frame_skip']}")
    header = (f"{'algo':>4} {'window':>14} {'env steps/s':>11} {'env frames/s':>12} "
              f"{'updates/s':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        for name, window in (("all", row), ("last half", row["last_half"])):
            print(f"{row['algo']:>4} {name + ' ' + fmt(window['seconds'], '.0f') + ' s':>14} "
                  f"{fmt(window['env_steps_per_s'], ',.0f'):>11} "
                  f"{fmt(window['env_frames_per_s'], ',.0f'):>12} "
                  f"{fmt(window['updates_per_s'], ',.2f'):>9}")
    print("\nreplay table: items at the end; bytes per item as stored (frames compressed) "
          "and raw")
    header = (f"{'algo':>4} {'stored':>7} {'inserted':>8} {'B/item':>10} "
              f"{'B/item raw':>10} {'ratio':>6} {'steps/item':>10} {'B/step':>10} "
              f"{'scrapes':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        per_step = ratio(row["bytes_per_item_compressed"], row["steps_per_item"])
        print(f"{row['algo']:>4} {fmt(row['items_stored'], ','):>7} "
              f"{fmt(row['items_inserted'], ','):>8} "
              f"{fmt(row['bytes_per_item_compressed'], ',.0f'):>10} "
              f"{fmt(row['bytes_per_item_uncompressed'], ','):>10} "
              f"{fmt(row['compression_ratio'], '.0f'):>5}x "
              f"{fmt(row['steps_per_item'], ','):>10} {fmt(per_step, ',.0f'):>10} "
              f"{row['scrapes_with_items']:>7}")
    for row in rows:
        if row["settings"]:
            print(f"{row['algo']} settings: {json.dumps(row['settings'])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = frame_skip(args.env)
    rows = []
    with tempfile.TemporaryDirectory(prefix="shoal-atari-") as temporary:
        root = args.run_dir or Path(temporary)
        for algo in args.algo:
            rows.append(measure(args, algo, root / f"{algo}-{time.strftime('%H%M%S')}", skip))
    print_rows(rows)
    if args.json:
        print(json.dumps(rows))
    return 0 if all(row["env_steps_per_s"] is not None for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
