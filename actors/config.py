"""What a run's actors are told about collecting, beside the algorithm's own settings:
the part of the run configuration (``launcher/config.py``) that is the actors'."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CollectionConfig:
    envs_per_actor: int = 8
    """Envs each actor steps together (one vector env); a rollout item holds all of them."""
    max_policy_lag: int | None = None
    """On-policy algorithms (those collecting rollouts) only. None: synchronous, actors
    wait for each new weight version; K: asynchronous, actors keep collecting and the
    learner leaves out rollouts more than K versions old. IMPALA's actors never wait, and
    its learner trains on every rollout unless K is given."""
    normalize_observations: bool = False
    """Feed the networks observations normalised by a running mean and variance that all
    actors count and the learner merges and broadcasts with the weights (SB3's
    VecNormalize, RLlib's MeanStdFilter), clipped to +-10; replay keeps them raw. Saved in
    checkpoints, used by shoal eval. For vector observations (frames are scaled already)."""

    def __post_init__(self) -> None:
        if self.envs_per_actor < 1:
            raise ValueError(f"envs_per_actor: expected a positive count, "
                             f"got {self.envs_per_actor}")
        if self.max_policy_lag is not None and self.max_policy_lag < 0:
            raise ValueError(f"max_policy_lag: expected >= 0, got {self.max_policy_lag}")
