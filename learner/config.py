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
    eval_every_env_steps: int = 10_000
    """Env steps between greedy evaluations of the published policy (no exploration,
    nothing written to replay); 0: none. The learner keeps the best so far as best.pt,
    which shoal eval plays. Counted in env steps, not updates: updates per env step differ
    100x between DQN and PPO, so no one count of updates suits both."""
    eval_episodes: int = 5
    """Episodes per evaluation, played at once from the same start states each time."""

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive count, got {getattr(self, name)}")
        if self.eval_every_env_steps < 0:
            raise ValueError(f"eval_every_env_steps: expected >= 0, "
                             f"got {self.eval_every_env_steps}")
