"""A real, short DQN training in one process (replay server, learner, actor as threads,
gRPC over loopback), and resuming it."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shoal.launcher.cli import main
from shoal.launcher.components import EVAL_SEED_OFFSET
from shoal.launcher.config import RunConfig
from shoal.launcher.evaluate import evaluate
from shoal.launcher.fleet import FleetPoll
from shoal.launcher.monitor import RunMonitor
from shoal.launcher.run_dir import EventLog, read_events

from .live import CONDITION, LIVE_TEST_TIMEOUT, RUN_TO_BUDGET, START, STOP, LiveTrain

# A fixture's run is timed with the first test that asks for it: the runs of this module
# take minutes on a loaded 2-core machine. Each wait inside is bounded by its own deadline.
pytestmark = pytest.mark.timeout(LIVE_TEST_TIMEOUT)

# small batches, few updates: learns quickly in one process, where threads share the GIL
FAST = {"batch_size": 64, "samples_per_insert": 8, "min_size_to_sample": 500,
        "error_buffer": 8 * 2048, "target_update_interval": 100, "epsilon_decay_steps": 12_000}


def train_command(tmp_path, *extra: str, sections: dict | None = None) -> list[str]:
    """``shoal train`` of DQN on CartPole with the FAST config, runs under tmp_path/runs;
    ``sections``: other parts of the configuration tree (``{"learner": {...}}``)."""
    config = tmp_path / "fast.yaml"
    tree = {"algorithm": FAST, **sections} if sections else FAST
    config.write_text(json.dumps(tree))  # JSON is YAML
    return [sys.executable, "-m", "shoal.launcher.cli", "train", "--algo", "dqn",
            "--env", "CartPole-v1", "--envs-per-actor", "4", "--config", str(config),
            "--run-dir", str(tmp_path / "runs"), "--json", *extra]


def train(tmp_path, *extra: str, sections: dict | None = None) -> subprocess.CompletedProcess:
    """A run to its step budget: for what counts steps, never for what takes time."""
    return subprocess.run(train_command(tmp_path, "--local", "--actors", "1", *extra,
                                        sections=sections),
                          capture_output=True, text=True, timeout=RUN_TO_BUDGET)


def live(tmp_path, *extra: str):
    """A run with no step budget to end it, for the test to stop once it saw what it
    checks (``LiveTrain``)."""
    return LiveTrain(tmp_path, train_command(tmp_path, "--local", "--actors", "1",
                                             "--total-env-steps", "1000000000", *extra))


# a greedy evaluation every 4,000 env steps: three in the run, of 3 episodes each
EVALUATIONS = {"learner": {"eval_every_env_steps": 4000, "eval_episodes": 3}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("train")
    result = train(tmp_path, "--seed", "0", "--total-env-steps", "14000", sections=EVALUATIONS)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return tmp_path, result, summary


def test_dqn_learns_cartpole_beyond_random(trained):
    _, result, summary = trained
    assert result.returncode == 0, result.stderr  # no target given: the budget ends it
    assert set(summary) == {"reached", "mean_return", "env_steps", "updates",
                            "seconds_from_first_step", "seconds_total", "run_dir",
                            "best_eval_return"}
    # a random policy averages ~22 on CartPole
    assert summary["mean_return"] >= 60, summary
    assert summary["env_steps"] >= 14000 and summary["updates"] > 500


def test_run_directory_holds_config_events_and_checkpoint(trained):
    _, _, summary = trained
    run_dir = Path(summary["run_dir"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algorithm"]["samples_per_insert"] == 8
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = {event["event"] for event in events}
    assert {"start", "episode", "summary"} <= kinds
    checkpoint = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert checkpoint["counters"]["env_steps"] == summary["env_steps"]
    targets = json.loads((run_dir / "prometheus_targets.json").read_text())
    assert sorted(group["labels"]["shoal_instance"] for group in targets) == [
        "actor-0", "launcher", "learner", "replay"]


def test_greedy_evaluations_are_logged_and_the_best_is_kept_and_played(trained, capsys):
    """The learner's evaluations (every 4,000 env steps, 3 episodes from the same start
    states) are events and stderr lines; best.pt holds the state the best one played, so
    ``shoal eval`` from the evaluations' seed plays its return again, and plays it by
    default."""
    _, result, summary = trained
    run_dir = Path(summary["run_dir"])
    evaluations = read_events(run_dir / "events.jsonl", "evaluation")
    assert evaluations, result.stderr[-3000:]
    scheduled = [e for e in evaluations if not e["final"]]
    multiples = [e["env_steps"] // 4000 for e in scheduled]
    assert multiples[0] >= 1 and multiples == sorted(set(multiples))  # one per multiple
    # the run ended at its budget: its last weights were played once more, last
    finals = [e for e in evaluations if e["final"]]
    assert len(finals) <= 1 and evaluations[-1]["final"] == bool(finals)
    if finals:
        assert finals[0]["env_steps"] <= summary["env_steps"]
        assert finals[0]["updates"] > scheduled[-1]["updates"]
    for event in evaluations:
        assert len(event["returns"]) == 3
        assert event["mean_return"] == pytest.approx(statistics.fmean(event["returns"]))
        assert event["version"] >= 1 and event["updates"] > 0 and event["seconds"] >= 0
    assert result.stderr.count("mean greedy return") >= len(evaluations)
    assert summary["best_eval_return"] == max(e["mean_return"] for e in evaluations)

    best_pt = run_dir / "learner" / "best.pt"
    best = torch.load(best_pt, weights_only=False)
    # an evaluation still playing at the last poll may have beaten the logged ones
    assert best["counters"]["eval_return"] >= summary["best_eval_return"]
    assert best["counters"]["eval_version"] == best["counters"]["published_version"]
    replayed = evaluate(run_dir, 3, seed=0 + EVAL_SEED_OFFSET)  # the run's seed is 0
    assert replayed.checkpoint == best_pt
    assert replayed.mean_return == best["counters"]["eval_return"]
    assert evaluate(run_dir, 1, latest=True).checkpoint == run_dir / "learner" / "learner.pt"

    with pytest.raises(SystemExit) as ended:  # `shoal eval RUN_DIR`, in this process
        main(["eval", str(run_dir), "--episodes", "1", "--json"])
    out, err = capsys.readouterr()
    assert ended.value.code == 0, err
    assert f"of {best_pt}" in out
    played = json.loads(out.strip().splitlines()[-1])
    assert {"mean_return", "episodes", "checkpoint", "returns"} <= set(played)
    assert played["checkpoint"] == str(best_pt) and len(played["returns"]) == 1


def test_eval_reports_the_spread_takes_a_seed_and_records_a_video(trained, capsys, tmp_path):
    _, _, summary = trained
    videos = tmp_path / "videos"

    def shoal_eval(*extra: str) -> dict:
        with pytest.raises(SystemExit) as ended:
            main(["eval", summary["run_dir"], "--episodes", "4", "--json", *extra])
        out, err = capsys.readouterr()
        assert ended.value.code == 0, err
        played = json.loads(out.strip().splitlines()[-1])
        assert f"mean return {played['mean_return']:.1f} ± {played['std_return']:.1f}" in out
        return played

    played = shoal_eval("--seed", "7", "--video", str(videos))
    returns = played["returns"]
    assert played["seed"] == 7 and len(returns) == 4
    assert (played["min_return"], played["max_return"]) == (min(returns), max(returns))
    assert played["std_return"] == pytest.approx(statistics.pstdev(returns))
    # the first episode, as an mp4 of CartPole's rgb_array frames
    assert [Path(video).parent for video in played["videos"]] == [videos]
    assert Path(played["videos"][0]).stat().st_size > 1_000
    assert shoal_eval("--seed", "7")["returns"] == returns  # the same start states again


def test_the_run_directory_holds_tensorboard_event_files_of_its_events(trained):
    """Read back with TensorBoard's own reader: the scalars are the event log's figures."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, summary = trained
    run_dir = Path(summary["run_dir"])
    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"train/episode_return", "eval/mean_return", "throughput/env_steps_per_s",
            "throughput/updates_per_s", "learner/loss", "train/mean_return"} <= tags, tags
    episodes = read_events(run_dir / "events.jsonl", "episode")
    returns = [scalar.value for scalar in board.Scalars("train/episode_return")]
    assert returns == pytest.approx([e["env_return"] for e in episodes])
    steps = [scalar.step for scalar in board.Scalars("train/episode_return")]
    assert steps == sorted(steps) and steps[-1] <= summary["env_steps"]  # the run's steps
    evaluations = read_events(run_dir / "events.jsonl", "evaluation")
    assert [(s.step, s.value) for s in board.Scalars("eval/mean_return")] == [
        (e["env_steps"], pytest.approx(e["mean_return"])) for e in evaluations]


def test_plot_draws_learning_and_throughput_curves_of_a_real_run(trained, tmp_path):
    _, _, summary = trained
    result = subprocess.run(
        [sys.executable, "-m", "shoal.launcher.cli", "plot", summary["run_dir"],
         summary["run_dir"], "--out", str(tmp_path / "plots")],
        capture_output=True, text=True, timeout=STOP)
    assert result.returncode == 0, result.stderr
    pictures = [Path(line) for line in result.stdout.split()]
    assert [p.name for p in pictures] == ["learning_curves.png", "throughput.png"]
    for picture in pictures:
        content = picture.read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 10_000


def test_resume_continues_counters_and_weights(trained):
    tmp_path, _, summary = trained
    run_dir = Path(summary["run_dir"])
    before = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    best_before = torch.load(run_dir / "learner" / "best.pt", weights_only=False)
    # the run's own configuration: no --algo, --env or --config again, a longer budget
    command = [sys.executable, "-m", "shoal.launcher.cli", "train", "--resume", str(run_dir),
               "--local", "--total-env-steps", "1000000000", "--json"]
    with LiveTrain(tmp_path, command) as run:
        def resumed_life() -> list[dict]:
            """The events since the resumed run's start (the log is the first run's too)."""
            events = run.events()
            starts = [i for i, event in enumerate(events) if event["event"] == "start"]
            return events[starts[-1]:] if len(starts) > 1 else []

        def trained_on_new_steps() -> bool:
            return any(event["event"] == "throughput"
                       and event["updates"] > before["learner"]["updates"]
                       and event["env_steps"] > summary["env_steps"]
                       for event in resumed_life())

        run.wait_for(trained_on_new_steps, CONDITION, "the resumed run to step and train")
        resumed = run.stop()
        life = resumed_life()
    after = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert resumed["run_dir"] == summary["run_dir"]
    assert resumed["env_steps"] > summary["env_steps"]
    assert after["learner"]["updates"] > before["learner"]["updates"]
    assert after["counters"]["published_version"] > before["counters"]["published_version"]
    assert after["counters"]["env_steps"] == resumed["env_steps"]
    # the best greedy evaluation so far came back from best.pt: the one to beat
    assert resumed["best_eval_return"] >= best_before["counters"]["eval_return"]
    # the run's counters came back from the checkpoint, and its steps count on from them
    assert life[0]["resumed"]["env_steps"] == summary["env_steps"]
    assert all(event["env_steps"] >= summary["env_steps"] for event in life
               if event["event"] == "throughput")


class Fleet:
    """One actor that takes 100 env steps per poll: the monitor's watch loop over fake
    components (also ``test_eval_views``'s)."""

    env_steps = 0

    def poll(self) -> FleetPoll:
        self.env_steps += 100
        return FleetPoll(self.env_steps)

    def __len__(self) -> int:
        return 1


def test_a_resumed_runs_step_budget_counts_the_steps_before_it(tmp_path):
    """--total-env-steps is the run's total: resumed at 14,000 steps with 16,000, the run
    takes 2,000 more. The watch loop over fake components, which step on each poll."""

    def call(handle: str, method: str, *args):
        assert (handle, method) == ("learner", "poll")
        return {"error": None, "started": 1.0, "updates": 7}

    fleet = Fleet()
    with EventLog(tmp_path / "events.jsonl") as events:
        monitor = RunMonitor(RunConfig(total_env_steps=16_000), events, call, "replay",
                             "learner", fleet, env_steps_before=14_000)
        progress = monitor.run(report_every=10**9, interval=0)
    assert fleet.env_steps == 2_000 and progress.env_steps == 16_000


def test_sigterm_stops_the_run_cleanly_with_checkpoint_and_summary(tmp_path):
    with live(tmp_path) as run:
        run.wait_for(lambda: run.latest("throughput"), START, "the run to be under way")
        summary = run.stop()
        stderr = run.stderr
    assert "Traceback" not in stderr
    run_dir = Path(summary["run_dir"])
    last = json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "summary" and last["interrupted"] is True
    saved = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert saved["counters"]["env_steps"] == summary["env_steps"]


def test_dqn_trains_on_atari_frames_end_to_end(tmp_path):
    """Pong through the whole loop: preprocessed uint8 frames, lz4 on the wire and in the
    table, the Nature CNN on the learner. Learning Pong is far beyond a test's budget: the
    run is stopped once it has trained and played a whole game."""
    config = tmp_path / "atari.yaml"
    config.write_text(json.dumps({"batch_size": 32, "buffer_size": 5000,
                                  "min_size_to_sample": 500, "samples_per_insert": 4,
                                  "error_buffer": 4 * 2048}))
    command = [sys.executable, "-m", "shoal.launcher.cli", "train", "--algo", "dqn",
               "--env", "ALE/Pong-v5", "--local", "--actors", "1", "--envs-per-actor", "2",
               "--total-env-steps", "1000000000", "--config", str(config),
               "--run-dir", str(tmp_path / "runs"), "--json"]
    with LiveTrain(tmp_path, command) as run:
        run.wait_for(lambda: run.latest("throughput").get("updates", 0) > 0
                     and run.latest("episode"), START, "an update and a whole game of Pong")
        summary = run.stop()
    assert summary["updates"] > 0
    run_dir = Path(summary["run_dir"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    start = next(event for event in events if event["event"] == "start")
    assert start["settings"]["algorithm"]["batch_size"] == 32
    episodes = [event["env_return"] for event in events if event["event"] == "episode"]
    assert episodes and all(-21 <= r <= 21 and r == int(r) for r in episodes)  # Pong scores
    assert torch.load(run_dir / "learner" / "learner.pt",
                      weights_only=False)["learner"]["updates"] >= summary["updates"]


def test_a_run_with_tls_trains_over_encrypted_channels(tmp_path):
    with live(tmp_path, "--tls") as run:
        run.wait_training()  # the learner sampled what the actor wrote, both over TLS
        summary = run.stop()
    assert summary["env_steps"] > 0 and summary["updates"] > 0
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "tls" / "tls.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert json.loads((run_dir / "config.json").read_text())["run"]["tls"] is True
