"""What ``shoal`` exits with, written once: ``shoal train --help`` prints this table, the
README repeats it, and scripts (``make run``, the benchmarks) read the codes from here."""

from __future__ import annotations

TRAINED = 0
"""The command did its job; for ``shoal train``: the run trained to its end, reaching
``--target-return`` or, without one, its step budget."""
FAILED = 1
"""A component failed: its traceback is printed (and in the run's events.jsonl)."""
USAGE = 2
"""A bad argument or config value: one line on stderr, nothing created."""
TARGET_MISSED = 3
"""``shoal train`` with ``--target-return``: the step budget ended the run first."""
INTERRUPTED = 130
"""Ctrl-C or SIGTERM ended ``shoal train``: components stopped in order, checkpoint and
summary written (``--resume`` continues it)."""

TRAIN_EXIT_CODES = {
    TRAINED: "trained to its end: reached --target-return, or its step budget without one",
    FAILED: "a component failed (the traceback is printed and in events.jsonl)",
    USAGE: "a bad argument or config value (one line; nothing created)",
    TARGET_MISSED: "--target-return was given and the step budget came first",
    INTERRUPTED: "Ctrl-C or SIGTERM: stopped in order, checkpoint and summary written",
}


def train_exit_code(reached: bool, target_given: bool, interrupted: bool) -> int:
    if interrupted:
        return INTERRUPTED
    return TARGET_MISSED if target_given and not reached else TRAINED


def epilog() -> str:
    """The exit-code table, as ``--help`` shows it under the options."""
    rows = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in TRAIN_EXIT_CODES.items())
    return f"exit codes:\n{rows}"
