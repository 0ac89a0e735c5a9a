"""``shoal plot``: learning and throughput curves of one or more runs, from their event logs.

Two PNGs, runs overlaid: ``learning_curves.png`` (mean return of the last 20 training
episodes against env steps and against wall-clock seconds from the run's start, with the
learner's greedy evaluations as markers: what the policy does without exploring) and
``throughput.png`` (env steps/s and updates/s against seconds). Points are the run's
throughput events, written every couple of seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.launcher.run_dir import read_events

if TYPE_CHECKING:
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


def read_curves(run_dir: Path) -> Curves:
    """Throughput events, and the summary as the last point of the return curve (the run
    ends between two reports, often right as it reaches its target)."""
    events = read_events(run_dir / "events.jsonl")
    start = next((e["time"] for e in events if e["event"] == "start"), events[0]["time"])
    throughput = [e for e in events if e["event"] == "throughput"]
    curves = Curves(
        name=run_dir.name,
        seconds=[e["time"] - start for e in throughput],
        env_steps=[e["env_steps"] for e in throughput],
        mean_return=[e["mean_return"] for e in throughput],
        env_steps_per_s=[e["env_steps_per_s"] for e in throughput],
        updates_per_s=[e["updates_per_s"] for e in throughput])
    curves.evaluations = [(e["time"] - e["seconds"] - start, e["env_steps"], e["mean_return"])
                          for e in events if e["event"] == "evaluation"]
    summary = next((e for e in events if e["event"] == "summary"), None)
    if summary is not None and summary["mean_return"] is not None:
        curves.end = (summary["time"] - start, summary["env_steps"], summary["mean_return"])
    return curves


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
    by_steps.set(xlabel="env steps", ylabel="mean return (training: last 20 episodes)",
                 title="return vs env steps")
    by_time.set(xlabel="seconds from the start", title="return vs wall clock")
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
    steps.set(xlabel="seconds from the start", ylabel="env steps/s", title="collection")
    updates.set(xlabel="seconds from the start", ylabel="updates/s", title="training")
    steps.legend(fontsize="small")
    throughput = out / "throughput.png"
    figure.savefig(throughput, dpi=100)
    plt.close(figure)
    return [learning, throughput]
