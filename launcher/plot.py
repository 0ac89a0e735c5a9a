"""``shoal plot``: learning and throughput curves of one or more runs, from their event logs.

Two PNGs, runs overlaid: ``learning_curves.png`` (mean return of the last 20 training
episodes against env steps and against wall-clock seconds from the run's start, with the
learner's greedy evaluations as markers: what the policy does without exploring) and
``throughput.png`` (env steps/s and updates/s against seconds). Points are the run's
throughput events, written every couple of seconds.

A resumed run's log holds several segments, one per ``start``: seconds are running time,
each segment's counted from its own start on top of the ones before (the hours between
them count nothing), and the run ends at its last summary. Resumes and actor-count changes
(``shoal scale``, ``--autoscale``) are marked on every panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.launcher.run_dir import read_events

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass
class Curves:
    name: str
    seconds: list[float]
    env_steps: list[int]
    mean_return: list[float | None]
    env_steps_per_s: list[float]
    updates_per_s: list[float]
    end: tuple[float, int, float] | None = None   # seconds, env steps, return at the end
    evaluations: list[tuple[float, int, float]] = field(default_factory=list)
    """Greedy evaluations: seconds and env steps when each started, its mean return."""
    marks: list[tuple[float, int, str]] = field(default_factory=list)
    """Seconds, env steps and what happened: a resume, a change of the actor count."""


def running_seconds(events: list[dict[str, Any]]) -> list[float]:
    """Each event's seconds of running time: from its segment's start (a ``start`` event),
    plus the length of every segment before it."""
    seconds, offset = [], 0.0
    start = last = events[0]["time"] if events else 0.0
    for index, event in enumerate(events):
        if event["event"] == "start" and index > 0:
            offset += last - start
            start = event["time"]
        seconds.append(offset + event["time"] - start)
        last = event["time"]
    return seconds


def read_curves(run_dir: Path) -> Curves:
    """Throughput events, and the summary as the last point of the return curve (the run
    ends between two reports, often right as it reaches its target)."""
    events = read_events(run_dir / "events.jsonl")
    timed = list(zip(running_seconds(events), events, strict=True))
    throughput = [(t, e) for t, e in timed if e["event"] == "throughput"]
    curves = Curves(
        name=run_dir.name,
        seconds=[t for t, _ in throughput],
        env_steps=[e["env_steps"] for _, e in throughput],
        mean_return=[e["mean_return"] for _, e in throughput],
        env_steps_per_s=[e["env_steps_per_s"] for _, e in throughput],
        updates_per_s=[e["updates_per_s"] for _, e in throughput])
    env_steps = 0  # the newest known: scale events do not carry them
    for seconds, event in timed:
        kind = event["event"]
        env_steps = event.get("env_steps", env_steps)
        if kind == "evaluation":
            curves.evaluations.append((seconds - event["seconds"], event["env_steps"],
                                       event["mean_return"]))
        elif kind == "start" and event.get("resumed"):
            curves.marks.append((seconds, int(event["resumed"].get("env_steps", env_steps)),
                                 "resumed"))
        elif kind in ("scale", "autoscale") and event.get("changed", True):
            curves.marks.append((seconds, env_steps,
                                 f"actors {event['previous']}->{event['actors']}"))
        elif kind == "summary" and event["mean_return"] is not None:
            curves.end = (seconds, event["env_steps"], event["mean_return"])  # the last
    return curves


def _mark(axes: Axes, runs: list[Curves], by: str) -> None:
    """A dotted line and its label at each run's marks, by seconds or by env steps."""
    for run in runs:
        for seconds, env_steps, what in run.marks:
            where = seconds if by == "seconds" else env_steps
            axes.axvline(where, color="grey", linestyle=":", linewidth=1)
            axes.annotate(what, (where, 1.0), xycoords=("data", "axes fraction"),
                          rotation=90, va="top", ha="right", fontsize="x-small", color="grey")


def learning_figure(runs: list[Curves]) -> Figure:
    """Each run's training return as a line, its greedy evaluations as markers of the same
    colour with a legend entry of their own (matplotlib already set to a backend)."""
    import matplotlib.pyplot as plt

    figure, (by_steps, by_time) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for run in runs:
        points = [(s, t, r) for s, t, r in zip(run.env_steps, run.seconds, run.mean_return,
                                                strict=True) if r is not None]
        if run.end is not None:
            points.append((run.end[1], run.end[0], run.end[2]))
        (line,) = by_steps.plot([p[0] for p in points], [p[2] for p in points], label=run.name)
        by_time.plot([p[1] for p in points], [p[2] for p in points], label=run.name,
                     color=line.get_color())
        if run.evaluations:
            label = "greedy eval" if len(runs) == 1 else f"{run.name} greedy eval"
            marker = {"marker": "D", "linestyle": "none", "color": line.get_color(),
                      "markerfacecolor": "none", "label": label}
            by_steps.plot([e[1] for e in run.evaluations], [e[2] for e in run.evaluations],
                          **marker)
            by_time.plot([e[0] for e in run.evaluations], [e[2] for e in run.evaluations],
                         **marker)
    _mark(by_steps, runs, "env steps")
    _mark(by_time, runs, "seconds")
    by_steps.set(xlabel="env steps", ylabel="mean return (training: last 20 episodes)",
                 title="return vs env steps")
    by_time.set(xlabel="running seconds (a resumed run's pause left out)",
                title="return vs wall clock")
    by_steps.legend(fontsize="small")
    return figure


def plot(run_dirs: list[Path], out: Path) -> list[Path]:
    """Writes the two PNGs into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    runs = [read_curves(run_dir) for run_dir in run_dirs]
    out.mkdir(parents=True, exist_ok=True)

    figure = learning_figure(runs)
    learning = out / "learning_curves.png"
    figure.savefig(learning, dpi=100)
    plt.close(figure)

    figure, (steps, updates) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for run in runs:
        steps.plot(run.seconds, run.env_steps_per_s, label=run.name)
        updates.plot(run.seconds, run.updates_per_s, label=run.name)
    _mark(steps, runs, "seconds")
    _mark(updates, runs, "seconds")
    steps.set(xlabel="seconds from the start", ylabel="env steps/s", title="collection")
    updates.set(xlabel="seconds from the start", ylabel="updates/s", title="training")
    steps.legend(fontsize="small")
    throughput = out / "throughput.png"
    figure.savefig(throughput, dpi=100)
    plt.close(figure)
    return [learning, throughput]
