"""The learner's part of the run configuration (``launcher/config.py``), beside the
algorithm's own settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LearnerConfig:
    checkpoint_every: int = 2_000
    """Updates between learner checkpoints (model, optimizer, target, counters), and one at
    exit: a learner that dies loses at most this many updates, and a restarted one resumes
    from the last."""

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: expected a positive count, "
                             f"got {self.checkpoint_every}")
