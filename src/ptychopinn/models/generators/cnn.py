"""``cnn``: the PtychoPINN-style encoder-decoder (conv blocks with pooling, two decoders)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Generator, register_generator
from .layers import ConvBlock, complex_object


@register_generator("cnn")
class CNNGenerator(Generator):
    """Encoder with max-pooling, then separate amplitude and phase decoders.

    Parameters
    ----------
    channels : int
        C, patterns in and patches out per group.
    size : int
        N; must be divisible by ``2 ** depth``.
    width : int
        Filter scale: stage i has ``width * 2**i`` channels.
    depth : int
        Pooling stages.
    amplitude_max : float
        Amplitude bound of the output.
    """

    @classmethod
    def size_multiple(cls, config) -> int:
        """N must be divisible by ``2**depth`` (one halving per stage)."""
        return 2**config.depth

    def __init__(
        self,
        channels: int,
        size: int,
        width: int = 16,
        depth: int = 3,
        modes: int = 0,
        amplitude_max: float = 2.0,
    ):
        super().__init__()
        if size % (2**depth):
            raise ValueError(f"cnn: N = {size} must be divisible by 2**depth = {2**depth}")
        widths = [width * 2**i for i in range(depth)]
        encoder, previous = [], channels
        for w in widths:
            encoder += [ConvBlock(previous, w), nn.MaxPool2d(2)]
            previous = w
        self.encoder = nn.Sequential(*encoder)
        self.amplitude_decoder = self._decoder(previous, widths, channels)
        self.phase_decoder = self._decoder(previous, widths, channels)
        self.amplitude_max = amplitude_max

    @staticmethod
    def _decoder(in_channels: int, widths: list[int], channels: int) -> nn.Sequential:
        layers, previous = [], in_channels
        for w in reversed(widths):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), ConvBlock(previous, w)]
            previous = w
        layers.append(nn.Conv2d(previous, channels, 3, padding=1))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, N, N)`` normalised amplitudes -> ``(B, C, N, N)`` complex patches."""
        features = self.encoder(x)
        return complex_object(
            self.amplitude_decoder(features), self.phase_decoder(features), self.amplitude_max
        )
