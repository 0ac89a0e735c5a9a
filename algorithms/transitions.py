"""What the off-policy algorithms (DQN, SAC) share: the transition table, and prioritized
replay's importance weights with their annealed exponent (Schaul et al., 2016)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from shoal.algorithms.base import EnvSpec
from shoal.algorithms.networks import is_image
from shoal.protos.tables import FieldSpec, SampleToInsertRatio, Selector, TableSpec


def transition_table(spec: EnvSpec, action: FieldSpec, *, max_size: int, selector: Selector,
                     samples_per_insert: float, min_size_to_sample: int,
                     error_buffer: float) -> TableSpec:
    """n-step transitions (s, a, R, s', d) as the actors' ``NStepTransitionAdder`` writes
    them, one per item, the oldest evicted first at capacity, and a rate limiter holding
    samples per insert (Reverb's ``SampleToInsertRatio``, its fields as the algorithm's
    config names them)."""
    # Image stacks keep each distinct frame once: obs and next_obs (8 frames, 1 new) cost
    # about one lz4 frame per transition instead of two compressed stacks.
    obs = FieldSpec(spec.observation_dtype, spec.observation_shape,
                    "lz4" if is_image(spec) else "none", frames=is_image(spec))
    return TableSpec(
        name="transitions", max_size=max_size, selector=selector,
        rate_limiter=SampleToInsertRatio(samples_per_insert, min_size_to_sample, error_buffer),
        signature={
            "obs": obs,
            "action": action,
            "reward": FieldSpec("float32"),       # discounted n-step sum
            "next_obs": obs,                       # the observation n later
            "discount": FieldSpec("float32"),     # gamma^k, 0 if terminal
            "version": FieldSpec("int64"),        # policy that acted
        })


Probabilities = TypeVar("Probabilities", np.ndarray, torch.Tensor)


def importance_weights(probabilities: Probabilities, beta: float) -> Probabilities:
    """w_i = (N P_i)^-beta / max_j (N P_j)^-beta == (min_j P_j / P_i)^beta: N cancels, so
    the batch's sampling probabilities are all it takes. The one place they are computed:
    the replay service sends probabilities, and beta anneals with the learner's updates."""
    return (probabilities.min() / probabilities) ** beta


def annealed_beta(initial: float, updates: int, anneal_updates: int) -> float:
    """beta from ``initial`` to 1, linearly over ``anneal_updates``: the bias that
    prioritized sampling brings matters most near convergence."""
    fraction = min(1.0, updates / max(1, anneal_updates))
    return initial + fraction * (1.0 - initial)
