"""A run's greedy evaluations as the launcher shows them: their settings, the events and
lines of the monitor, ``shoal top``, ``shoal plot``, and which checkpoint ``shoal eval``
plays. No run here: tests/launcher/test_train_local.py has the real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoal.launcher.config import RunConfig
from shoal.launcher.config_help import field_docs
from shoal.launcher.evaluate import resolve_checkpoint
from shoal.launcher.monitor import Progress, RunMonitor
from shoal.launcher.plot import learning_figure, read_curves
from shoal.launcher.rates import Rates
from shoal.launcher.run_dir import EventLog, read_events
from shoal.launcher.top import line
from shoal.launcher.usage import UsageError
from shoal.learner.config import LearnerConfig

from ..conftest import run_config
from .test_top import samples
from .test_train_local import Fleet

# ------------------------------------------------------------------------- settings


def test_the_settings_are_checked_and_documented():
    assert LearnerConfig().eval_every_env_steps == 10_000
    assert LearnerConfig(eval_every_env_steps=0).eval_every_env_steps == 0  # none
    with pytest.raises(ValueError, match="eval_episodes: expected a positive count, got 0"):
        LearnerConfig(eval_episodes=0)
    with pytest.raises(ValueError, match="eval_every_env_steps: expected >= 0, got -1"):
        LearnerConfig(eval_every_env_steps=-1)
    with pytest.raises(UsageError, match=r"--config: learner\.eval_episodes: expected a "
                                         r"positive count, got 0"):
        run_config(learner={"eval_episodes": 0})
    docs = field_docs(LearnerConfig)
    assert "best.pt" in docs["eval_every_env_steps"] and "updates" in docs["eval_every_env_steps"]
    assert docs["eval_episodes"]


# ------------------------------------------------------------------------- monitor


def test_the_progress_line_shows_the_budget_an_eta_the_actors_and_one_return(tmp_path):
    with EventLog(tmp_path / "events.jsonl") as events:
        progress = Progress(RunConfig(total_env_steps=100_000, return_window=2), events)
        # resumed at 10,000; 15,000 more in this life's first 100 s: 150/s, 75,000 to go
        progress.env_steps_before, progress.env_steps = 10_000, 25_000
        progress.first_step_time, progress.updates = 1_000.0, 2_000
        progress.returns.extend([90.0, 99.0])
        shown = progress.headline(actors=3, steps_per_s=140.0, updates_per_s=20.0,
                                  now=1_100.0)
    assert shown == ("env steps 25,000 of 100,000 (25%, ETA 8m 20s)  140/s  updates 2,000 "
                     "(20/s)  actors 3  mean return 94.5")
    assert "return" not in shown.replace("mean return", "")  # one return, not two


RESULT = {"env_steps": 20_000, "updates": 570, "version": 57, "mean_return": 312.4,
          "returns": [300.0, 320.0, 310.0, 330.0, 302.0], "seconds": 0.8}


def test_each_evaluation_is_an_event_and_a_line_and_the_best_is_kept(tmp_path, capsys):
    polls = [{"evaluations": [RESULT], "best_eval_return": 312.4},
             {"evaluations": [], "best_eval_return": 312.4},
             {"evaluations": [{**RESULT, "env_steps": 30_000, "version": 80,
                               "mean_return": 250.0}], "best_eval_return": 312.4}]

    def call(handle: str, method: str, *args):
        return {"error": None, "started": 1.0, "updates": 7, **polls.pop(0)}

    with EventLog(tmp_path / "events.jsonl") as events:
        monitor = RunMonitor(run_config().run, events, call, "replay", "learner", Fleet(),
                             env_steps_before=0)
        for _ in range(3):
            monitor.poll()
    logged = read_events(tmp_path / "events.jsonl", "evaluation")
    assert [{k: e[k] for k in RESULT} for e in logged] == [
        RESULT, {**RESULT, "env_steps": 30_000, "version": 80, "mean_return": 250.0}]
    assert capsys.readouterr().err.splitlines() == [
        "evaluation at 20,000 env steps (version 57): mean greedy return 312.4 over 5 "
        "episodes; best 312.4",
        "evaluation at 30,000 env steps (version 80): mean greedy return 250.0 over 5 "
        "episodes; best 312.4"]
    assert monitor.progress.eval_return == 250.0
    assert monitor.progress.best_eval_return == 312.4


def test_a_resumed_best_is_known_before_the_first_evaluation(tmp_path):
    def call(handle: str, method: str, *args):
        return {"error": None, "started": 1.0, "updates": 7, "evaluations": [],
                "best_eval_return": 480.0}

    with EventLog(tmp_path / "events.jsonl") as events:
        monitor = RunMonitor(run_config().run, events, call, "replay", "learner", Fleet(),
                             env_steps_before=0)
        monitor.poll()
    assert monitor.progress.best_eval_return == 480.0 and monitor.progress.eval_return is None


# ------------------------------------------------------------------------- shoal top


def test_top_shows_the_learners_latest_greedy_return():
    before = samples(0, 0, 0, 0, 0, 0, 0)
    after = {**samples(100, 100, 800, 10, 1.0, 0.1, 0.4),
             ("shoal_learner_eval_return", "learner"): 287.6}
    rates = Rates.between(before, after, seconds=2.0)
    assert rates.eval_return == 287.6
    assert "eval 287.6" in line(rates)
    assert Rates.between(before, samples(100, 100, 800, 10, 1.0, 0.1, 0.4), 2.0).eval_return \
        is None  # no evaluation yet: no series
    assert "eval -" in line(Rates.between(before, samples(100, 100, 800, 10, 1.0, 0.1, 0.4),
                                          2.0))


# ------------------------------------------------------------------------- shoal plot


def write_run(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    rows = [{"event": "start", "time": 100.0},
            {"event": "throughput", "time": 102.0, "env_steps": 1000, "mean_return": 20.0,
             "env_steps_per_s": 500.0, "updates_per_s": 10.0},
            {"event": "evaluation", "time": 103.5, "env_steps": 1500, "updates": 40,
             "version": 5, "mean_return": 60.0, "returns": [60.0], "seconds": 0.5},
            {"event": "throughput", "time": 104.0, "env_steps": 2000, "mean_return": 40.0,
             "env_steps_per_s": 500.0, "updates_per_s": 10.0}]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_plot_draws_greedy_evaluations_as_markers_with_their_own_legend_entry(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_run(tmp_path / "a")
    curves = read_curves(tmp_path / "a")
    assert curves.evaluations == [(3.0, 1500, 60.0)]  # when it started: 103.5 - 0.5 - 100
    figure = learning_figure([curves])
    by_steps, by_time = figure.axes
    assert [t.get_text() for t in by_steps.get_legend().get_texts()] == ["a", "greedy eval"]
    markers = [artist for artist in by_steps.lines if artist.get_label() == "greedy eval"]
    assert markers and markers[0].get_linestyle() == "None"
    assert list(markers[0].get_xdata()) == [1500] and list(markers[0].get_ydata()) == [60.0]
    timed = [artist for artist in by_time.lines if artist.get_label() == "greedy eval"]
    assert list(timed[0].get_xdata()) == [3.0]
    plt.close(figure)

    write_run(tmp_path / "b")
    figure = learning_figure([curves, read_curves(tmp_path / "b")])
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["a", "a greedy eval", "b", "b greedy eval"]
    plt.close(figure)


def test_a_resumed_run_plots_in_running_time_to_its_last_end_with_its_changes_marked(
        tmp_path):
    """Two segments an hour apart: the second's seconds go on from the first's length, the
    end is the second's summary, and the resume and a scale are marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate = {"env_steps_per_s": 500.0, "updates_per_s": 10.0}
    rows = [{"event": "start", "time": 100.0},
            {"event": "throughput", "time": 102.0, "env_steps": 1000, "mean_return": 20.0,
             **rate},
            {"event": "summary", "time": 104.0, "env_steps": 2000, "mean_return": 40.0},
            {"event": "start", "time": 3700.0, "resumed": {"env_steps": 2000}},
            {"event": "scale", "time": 3703.0, "previous": 2, "actors": 3},
            {"event": "autoscale", "time": 3703.5, "previous": 3, "actors": 3,
             "changed": False, "reason": "balanced"},
            {"event": "throughput", "time": 3704.0, "env_steps": 3000, "mean_return": 60.0,
             **rate},
            {"event": "summary", "time": 3706.0, "env_steps": 3500, "mean_return": 80.0}]
    run_dir = tmp_path / "resumed"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = read_curves(run_dir)
    assert curves.seconds == [2.0, 8.0]  # 4 s of the first segment, then 4 of the second
    assert curves.end == (10.0, 3500, 80.0)  # the last summary, not the first
    assert curves.marks == [(4.0, 2000, "resumed"), (7.0, 2000, "actors 2->3")]
    figure = learning_figure([curves])
    _, by_time = figure.axes
    assert [text.get_text() for text in by_time.texts] == ["resumed", "actors 2->3"]
    drawn = [line for line in by_time.lines if line.get_label() == "resumed"]
    assert list(drawn[0].get_xdata()) == [2.0, 8.0, 10.0]  # no hour-long gap
    plt.close(figure)


# ------------------------------------------------------------------------- shoal eval


def test_eval_of_a_run_plays_best_pt_when_it_has_one(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "learner").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"algo": "dqn", "env": "CartPole-v1"}))
    latest = run_dir / "learner" / "learner.pt"
    latest.write_bytes(b"")
    assert resolve_checkpoint(run_dir)[0] == latest  # no best.pt yet
    best = run_dir / "learner" / "best.pt"
    best.write_bytes(b"")
    for where in (run_dir, run_dir / "learner"):
        checkpoint, config = resolve_checkpoint(where)
        assert checkpoint == best and config["algo"] == "dqn"
        assert resolve_checkpoint(where, latest=True)[0] == latest
    assert resolve_checkpoint(latest)[0] == latest  # a file plays that file
    assert resolve_checkpoint(best, latest=True)[0] == best
    with pytest.raises(FileNotFoundError, match="CHECKPOINT: no learner checkpoint at"):
        resolve_checkpoint(tmp_path / "elsewhere")
    latest.unlink()
    with pytest.raises(FileNotFoundError, match="no learner checkpoint"):
        resolve_checkpoint(run_dir, latest=True)
