"""TensorBoard event files in every run directory (``RUN_DIR/tensorboard``), since
``tensorboard --logdir runs`` is what users of SB3, CleanRL and RLlib type first. They
mirror the event log (``events.jsonl`` stays the record, Prometheus the live view): each
event ``EventLog`` writes is also handed to ``TensorBoardSink``, which turns the ones with
figures into scalars at the run's env steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TENSORBOARD = "tensorboard"

THROUGHPUT = {  # throughput event field -> scalar tag
    "mean_return": "train/mean_return",
    "env_steps_per_s": "throughput/env_steps_per_s",
    "updates_per_s": "throughput/updates_per_s",
    "loss": "learner/loss",
    "learner_busy": "learner/busy",
    "learner_waiting": "learner/waiting",
    "policy_lag": "learner/policy_lag",
    "actors_blocked": "actors/blocked_on_insert",
    "actors": "actors/count",
    "replay_size": "replay/size",
}


class TensorBoardSink:
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(run_dir / TENSORBOARD))

    def __call__(self, event: dict[str, Any]) -> None:
        kind, write = event["event"], self._writer.add_scalar
        if kind == "episode" and event.get("env_steps") is not None:
            write("train/episode_return", event["env_return"], event["env_steps"])
            write("train/episode_length", event["length"], event["env_steps"])
        elif kind == "evaluation":
            write("eval/mean_return", event["mean_return"], event["env_steps"])
        elif kind == "throughput":
            for field, tag in THROUGHPUT.items():
                if event.get(field) is not None:
                    write(tag, event[field], event["env_steps"])
            if event.get("updates") is not None:
                write("learner/updates", event["updates"], event["env_steps"])

    def close(self) -> None:
        self._writer.close()
