"""``shoal top``: the balance of a run between collection (actors) and training (learner),
read from the /metrics endpoints its processes serve.

Two scrapes a few seconds apart give rates (``Rates.between``); ``verdict`` names the side
that bounds the run and what to change. The view is a rich live panel in a terminal and
one plain line per interval otherwise. It follows the run as it changes: the targets file is
read again for every view (``shoal scale`` and Ray's restarts rewrite it), and once the
run's event log says it ended the view says so and ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.panel import Panel

from shoal.launcher.rates import Rates, read_targets, scrape
from shoal.launcher.run_dir import read_events

WAITING_TOO_MUCH = 0.2   # the learner waiting this much of the time: collection bounds it
BLOCKED_TOO_MUCH = 0.5   # actors blocked on insert this much: training bounds it


def verdict(rates: Rates) -> str:
    """Which side bounds the run, and what to change."""
    if rates.learner_waiting >= WAITING_TOO_MUCH and rates.actors_blocked < BLOCKED_TOO_MUCH:
        return (f"collection is the bottleneck: the learner waits {rates.learner_waiting:.0%} "
                "of the time for data; add actors")
    if rates.actors_blocked >= BLOCKED_TOO_MUCH:
        advice = ("fewer actors would do as much" if len(rates.env_steps_per_s) > 1 else
                  "with one actor, only a faster learner (a GPU) would go faster")
        return (f"training is the bottleneck: actors wait {rates.actors_blocked:.0%} of the "
                f"time for the learner; {advice}")
    return "balanced: the learner is busy and actors are rarely held back"


def _number(value: float | None, form: str = ",.0f") -> str:
    return "-" if value is None else format(value, form)


def line(rates: Rates) -> str:
    """The plain form, for logs and pipes."""
    return (f"env steps/s {_number(rates.env_steps_per_s_total)}  "
            f"inserts/s {_number(rates.inserts_per_s)}  samples/s {_number(rates.samples_per_s)}  "
            f"updates/s {_number(rates.updates_per_s)}  "
            f"samples/insert {_number(rates.samples_per_insert, '.1f')}  "
            f"learner busy {rates.learner_busy:.0%} waiting {rates.learner_waiting:.0%}  "
            f"actors blocked {rates.actors_blocked:.0%}  "
            f"policy lag {_number(rates.policy_lag, '.1f')}  "
            f"return {_number(rates.recent_return, '.1f')}  "
            f"eval {_number(rates.eval_return, '.1f')}  | {verdict(rates)}")


def panel(rates: Rates, title: str) -> Panel:
    """The rich form: a table of the figures above the verdict."""
    from rich.console import Group
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("process")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for actor, steps in rates.env_steps_per_s.items():
        table.add_row(actor, "env steps/s", _number(steps))
    table.add_row("actors", "env steps/s (total)", _number(rates.env_steps_per_s_total))
    table.add_row("actors", "blocked on insert", f"{rates.actors_blocked:.0%}")
    table.add_row("actors", "recent return", _number(rates.recent_return, ".1f"))
    table.add_row("replay", "inserts/s", _number(rates.inserts_per_s))
    table.add_row("replay", "samples/s", _number(rates.samples_per_s))
    table.add_row("replay", "samples per insert", _number(rates.samples_per_insert, ".1f"))
    table.add_row("learner", "updates/s", _number(rates.updates_per_s))
    table.add_row("learner", "busy / waiting",
                  f"{rates.learner_busy:.0%} / {rates.learner_waiting:.0%}")
    table.add_row("learner", "policy lag (versions)", _number(rates.policy_lag, ".1f"))
    table.add_row("learner", "greedy eval return", _number(rates.eval_return, ".1f"))
    return Panel(Group(table, verdict(rates)), title=title)


def compact(headline: str, rates: Rates | None) -> Panel:
    """What ``shoal train`` shows while it runs: its progress line over three rows of
    ``shoal top`` and the verdict."""
    from rich.console import Group
    from rich.table import Table

    if rates is None:
        return Panel(headline, title="shoal train")
    table = Table(show_header=False, box=None, pad_edge=False)
    # no return here: the headline's mean return is the one the target is about
    table.add_row("actors", f"{_number(rates.env_steps_per_s_total)} env steps/s",
                  f"blocked {rates.actors_blocked:.0%}", "")
    table.add_row("replay", f"{_number(rates.inserts_per_s)} inserts/s",
                  f"{_number(rates.samples_per_s)} samples/s",
                  f"{_number(rates.samples_per_insert, '.1f')} per insert")
    table.add_row("learner", f"{_number(rates.updates_per_s)} updates/s",
                  f"busy {rates.learner_busy:.0%} waiting {rates.learner_waiting:.0%}",
                  f"policy lag {_number(rates.policy_lag, '.1f')}")
    return Panel(Group(headline, table, verdict(rates)), title="shoal train")


def newest_run(parent: Path) -> Path | None:
    """The most recently started run under ``parent`` that has metrics targets."""
    runs = sorted(parent.glob("*/prometheus_targets.json"), key=lambda p: p.stat().st_mtime)
    return runs[-1].parent if runs else None


def stopped(run_dir: Path) -> str | None:
    """How the run ended, once its event log says it has (a summary or a failure after its
    last start); None while it runs."""
    path = run_dir / "events.jsonl"
    events = read_events(path) if path.exists() else []
    for event in reversed(events):
        if event["event"] == "start":
            return None
        if event["event"] == "failed":
            return f"run {run_dir.name} has stopped: it failed ({event['error']})"
        if event["event"] == "summary":
            how = ("it reached the target" if event["reached"] else
                   "it was interrupted" if event.get("interrupted") else
                   "its step budget ended it")
            mean = event.get("mean_return")
            return (f"run {run_dir.name} has stopped: {how} at {event['env_steps']:,} env "
                    f"steps, mean return {'n/a' if mean is None else f'{mean:.1f}'}")
    return None


def follow(run_dir: Path, interval: float) -> Iterator[Rates | str]:
    """The run's rates over each ``interval``, scraped from the processes its targets file
    lists at that moment; last, once the run has ended, how it ended."""
    ended = stopped(run_dir)
    if ended is not None:
        yield ended
        return
    before, then = scrape(read_targets(run_dir)), time.monotonic()
    while True:
        time.sleep(interval)
        ended = stopped(run_dir)
        if ended is not None:
            yield ended
            return
        after, now = scrape(read_targets(run_dir)), time.monotonic()
        yield Rates.between(before, after, now - then)
        before, then = after, now


def view(run_dir: Path, interval: float = 2.0, iterations: int | None = None) -> None:
    """Show ``follow``'s rates until the run ends, Ctrl-C or ``iterations`` views."""
    live = None
    if sys.stdout.isatty():
        from rich.live import Live

        live = Live(auto_refresh=False)
        live.start()
    try:
        for shown, rates in enumerate(follow(run_dir, interval)):
            if iterations is not None and shown >= iterations:
                break
            if isinstance(rates, str):
                if live is not None:
                    live.update(Panel(rates, title=f"shoal top  {run_dir.name}"), refresh=True)
                else:
                    print(rates, flush=True)
            elif live is not None:
                live.update(panel(rates, f"shoal top  {run_dir.name}"), refresh=True)
            else:
                print(line(rates), flush=True)
    finally:
        if live is not None:
            live.stop()
