"""Networks shared by the algorithms: an MLP for vector observations, the Nature CNN for
84x84x4 uint8 frame stacks (Mnih et al., 2015)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from shoal.algorithms.base import EnvSpec


def mlp(inputs: int, hidden: Sequence[int], outputs: int,
        activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, size), activation()]
        width = size
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def nature_layers(features: int = 512) -> list[nn.Module]:
    """Conv 32x8x8/4, 64x4x4/2, 64x3x3/1, then a dense layer of ``features`` with its ReLU:
    the Nature CNN without its output layer, for uint8 [B, 4, 84, 84] frame stacks
    (gymnasium's FrameStackObservation stacks on the first axis)."""
    return [
        nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, features), nn.ReLU(),
    ]


def scaled(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames to [0, 1] floats, inside the network, so frames stay uint8 (4x smaller
    than float) all the way to the device."""
    return frames.float() / 255.0


class NatureCNN(nn.Module):
    """The Nature CNN with its output layer: frames in, ``outputs`` values out (DQN's Q)."""

    def __init__(self, outputs: int, features: int = 512) -> None:
        super().__init__()
        self.body = nn.Sequential(*nature_layers(features), nn.Linear(features, outputs))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.body(scaled(frames))


class NatureTorso(nn.Module):
    """The Nature CNN up to its ``features`` ReLU units: a torso that several heads share,
    so one convolution pass serves them all (PPO's and A2C's policy and value on frames)."""

    def __init__(self, features: int = 512) -> None:
        super().__init__()
        self.features = features
        self.body = nn.Sequential(*nature_layers(features))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.body(scaled(frames))


def network_input(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observations as the networks take them: frames stay uint8 (the CNN scales them, and
    they stay 4x smaller than floats on the way to the device); vectors become float32."""
    tensor = torch.as_tensor(array)
    return tensor if tensor.dtype == torch.uint8 else tensor.float()


def is_image(spec: EnvSpec) -> bool:
    return spec.observation_dtype == "uint8" and len(spec.observation_shape) == 3


def torso_and_head(spec: EnvSpec, hidden: Sequence[int], outputs: int,
                   activation: type[nn.Module] = nn.ReLU) -> nn.Module:
    """The network an algorithm asks for: Nature CNN for frame stacks, else an MLP."""
    if is_image(spec):
        return NatureCNN(outputs)
    inputs = 1
    for dim in spec.observation_shape:
        inputs *= dim
    return nn.Sequential(nn.Flatten(), mlp(inputs, hidden, outputs, activation))


def orthogonal_init(network: nn.Module, head_gain: float) -> nn.Module:
    """Orthogonal weights (gain sqrt 2) and zero biases, the last layer scaled by
    ``head_gain``: the initialisation of the PPO/A2C reference implementations (baselines,
    SB3, CleanRL). A policy head of gain 0.01 starts near uniform over actions; with
    PyTorch's default init, CartPole PPO and A2C took 2-3x the env steps."""
    layers = [m for m in network.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for index, layer in enumerate(layers):
        gain = head_gain if index == len(layers) - 1 else 2 ** 0.5
        nn.init.orthogonal_(layer.weight, gain)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return network
