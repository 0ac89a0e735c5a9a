"""SAC's networks and the density of their actions: a tanh-squashed Gaussian policy that
keeps actions inside the env's Box, twin Q networks on [observation, action], and the
checks of the spec both need. Out of ``sac.py`` so the algorithm there reads as its update;
nothing here depends on the replay table or the learner."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shoal.algorithms.base import EnvSpec
from shoal.algorithms.networks import is_image, mlp

LOG_STD_MIN = -5.0
"""The policy's log standard deviation is squashed into [LOG_STD_MIN, LOG_STD_MAX]: below,
the density (and log pi) blows up; above, tanh saturates and every action is +-1."""
LOG_STD_MAX = 2.0



def squashed_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor,
                               pre_tanh: torch.Tensor,
                               action_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """log pi(a|s) of a = action_scale * tanh(u) + bias, u ~ N(mean, exp(log_std)), summed
    over the last (action) axis. By the change of variables (SAC paper, appendix C)::

        log pi(a) = sum_j [log N(u_j; mean_j, std_j) - log(1 - tanh(u_j)^2)
                           - log action_scale_j]

    with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact and finite where
    tanh(u) rounds to +-1 (the usual log(1 - tanh(u)^2 + 1e-6) is off there)."""
    normal = (-0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std
              - 0.5 * math.log(2 * math.pi))
    log_det_tanh = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    log_scale = torch.log(torch.as_tensor(action_scale, dtype=mean.dtype,
                                          device=mean.device)).expand_as(mean)
    return (normal - log_det_tanh - log_scale).sum(dim=-1)


def check_spec(spec: EnvSpec) -> None:
    """SAC as written here: Box actions with finite bounds, vector observations."""
    if spec.discrete:
        raise ValueError(f"sac needs a continuous (Box) action space; spec.num_actions = "
                         f"{spec.num_actions} says the actions are discrete")
    size = action_size(spec)
    for name, bound in (("action_low", spec.action_low), ("action_high", spec.action_high)):
        if len(bound) != size or not np.all(np.isfinite(bound)):
            raise ValueError(f"sac needs finite Box bounds: spec.{name} = {bound}, expected "
                             f"{size} finite numbers for action_shape {spec.action_shape}")
    if np.any(np.asarray(spec.action_high) <= np.asarray(spec.action_low)):
        raise ValueError(f"sac needs action_high > action_low, got spec.action_low = "
                         f"{spec.action_low} and spec.action_high = {spec.action_high}")
    if is_image(spec):
        raise ValueError(f"sac takes vector observations; spec.observation_shape = "
                         f"{spec.observation_shape} ({spec.observation_dtype}) are frames")


def action_size(spec: EnvSpec) -> int:
    return int(np.prod(spec.action_shape))


def observation_size(spec: EnvSpec) -> int:
    return int(np.prod(spec.observation_shape))


def flat_observations(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[B, ...] observations as float32 rows [B, D]: what the MLPs on [obs, action] take."""
    tensor = torch.as_tensor(array).float()
    return tensor.reshape(len(tensor), -1)


class SquashedGaussianActor(nn.Module):
    """The policy: an MLP giving a state-dependent mean and log std per action dimension;
    a = scale * tanh(u) + bias with u ~ N(mean, std), which keeps actions inside the Box.
    scale and bias come from the spec, so they are not weights (not in ``state_dict``)."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.action_shape = spec.action_shape
        self.net = mlp(observation_size(spec), hidden, 2 * action_size(spec))
        low = torch.tensor(spec.action_low, dtype=torch.float32)
        high = torch.tensor(spec.action_high, dtype=torch.float32)
        self.action_scale: torch.Tensor
        self.action_bias: torch.Tensor
        self.register_buffer("action_scale", (high - low) / 2.0, persistent=False)
        self.register_buffer("action_bias", (high + low) / 2.0, persistent=False)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_log_std = self.net(obs).chunk(2, dim=-1)
        # a smooth squash into [min, max] rather than a clamp, so the gradient never dies
        # (CleanRL's choice)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw_log_std) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action [B, |A|] in env units, and its log-prob [B]."""
        mean, log_std = self(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                            device=mean.device)
        pre_tanh = mean + log_std.exp() * noise
        action = torch.tanh(pre_tanh) * self.action_scale + self.action_bias
        return action, squashed_gaussian_log_prob(mean, log_std, pre_tanh, self.action_scale)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """scale * tanh(mean) + bias: the policy's most representative action."""
        mean, _ = self(obs)
        return torch.tanh(mean) * self.action_scale + self.action_bias


class TwinQ(nn.Module):
    """Two independent Q(s, a) MLPs on [obs, action]; the target takes their minimum,
    which counters the overestimation a single Q network feeds itself (TD3, Fujimoto et
    al., 2018)."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...]) -> None:
        super().__init__()
        inputs = observation_size(spec) + action_size(spec)
        self.q1 = mlp(inputs, hidden, 1)
        self.q2 = mlp(inputs, hidden, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.cat([obs, action], dim=1)
        return self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)
