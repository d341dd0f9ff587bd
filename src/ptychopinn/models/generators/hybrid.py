"""``hybrid``: spectral encoder with downsampling, residual bottleneck, upsampling to N."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Generator, register_generator
from .layers import FNOBlock, ResidualBlock, complex_object


@register_generator("hybrid")
class HybridGenerator(Generator):
    """A U-shaped network whose encoder stages are Fourier-operator blocks.

    Stage i works at ``N / 2**i`` with ``width * 2**i`` channels: a spectral block (global
    receptive field, both frequency signs), then a strided convolution halves the size.
    Two residual blocks form the bottleneck; the decoder upsamples (bilinear), concatenates
    the encoder features of the same size and mixes them with a 3x3 convolution.

    Parameters
    ----------
    channels, size, width, depth, modes, amplitude_max
        As for :class:`~ptychopinn.models.generators.fno.FNOGenerator`; N must be divisible
        by ``2 ** depth``.
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
        modes: int = 12,
        amplitude_max: float = 2.0,
    ):
        super().__init__()
        if size % (2**depth):
            raise ValueError(f"hybrid: N = {size} must be divisible by 2**depth = {2**depth}")
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.encoder = nn.ModuleList(
            # halve the kept modes with the resolution: the same physical band at every stage
            FNOBlock(widths[i], max(2, min(modes // 2**i, size // 2 ** (i + 1))))
            for i in range(depth)
        )
        self.down = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(depth)
        )
        self.bottleneck = nn.Sequential(ResidualBlock(widths[-1]), ResidualBlock(widths[-1]))
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i + 1] + widths[i], widths[i], 3, padding=1), nn.GELU())
            for i in range(depth)
        )
        self.head = nn.Conv2d(width, 2 * channels, 3, padding=1)
        self.channels = channels
        self.amplitude_max = amplitude_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, N, N)`` normalised amplitudes -> ``(B, C, N, N)`` complex patches."""
        h = self.stem(x)
        skips = []
        for block, down in zip(self.encoder, self.down, strict=True):
            h = block(h)
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for i in reversed(range(len(self.up))):
            h = F.interpolate(h, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.up[i](torch.cat([h, skips[i]], dim=1))
        out = self.head(h)
        return complex_object(out[:, : self.channels], out[:, self.channels :], self.amplitude_max)
