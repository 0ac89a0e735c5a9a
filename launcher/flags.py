"""Which flags set which fields of the run configuration (``config.py``), in a module of
its own: the parser needs the names before anything imports an algorithm (torch)."""

from __future__ import annotations

FLAGS: dict[str, tuple[str, str]] = {
    "--seed": ("", "seed"),
    "--total-env-steps": ("run", "total_env_steps"),
    "--target-return": ("run", "target_return"),
    "--return-window": ("run", "return_window"),
    "--actors": ("run", "actors"),
    "--num-actors": ("run", "actors"),   # shoal learner / shoal actor: the run's actors
    "--max-actors": ("run", "max_actors"),
    "--autoscale": ("run", "autoscale"),
    "--tls": ("run", "tls"),
    "--deterministic": ("run", "deterministic"),
    "--envs-per-actor": ("collection", "envs_per_actor"),
    "--max-policy-lag": ("collection", "max_policy_lag"),
    "--replay-checkpoint-every": ("replay", "checkpoint_every_seconds"),
    "--checkpoint-every": ("learner", "checkpoint_every"),
}
"""Flag -> (section, field) of the tree: the only settings a flag may set."""

SWITCHES = {"--tls", "--deterministic"}
"""Flags that take no value: given, they set their field to true."""

METAVARS = {"--autoscale": "MIN:MAX", "--max-policy-lag": "K",
            "--replay-checkpoint-every": "SECONDS", "--checkpoint-every": "UPDATES"}


def flag_dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
