"""``fno``: a Fourier neural operator at full resolution."""

from __future__ import annotations

import torch
from torch import nn

from .base import Generator, register_generator
from .layers import FNOBlock, complex_object


@register_generator("fno")
class FNOGenerator(Generator):
    """Lift (1x1 conv) -> ``depth`` residual spectral blocks -> project to amplitude and phase.

    Parameters
    ----------
    channels : int
        C.
    size : int
        N (any even size; the spectral layers keep at most N/2 modes).
    width : int
        Channels inside the operator.
    depth : int
        Spectral blocks.
    modes : int
        Fourier modes kept per axis and sign.
    amplitude_max : float
        Amplitude bound of the output.
    """

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
        self.lift = nn.Conv2d(channels, width, 1)
        self.blocks = nn.Sequential(*[FNOBlock(width, modes) for _ in range(depth)])
        self.project = nn.Sequential(nn.Conv2d(width, width, 1), nn.GELU(), nn.Conv2d(width, 2 * channels, 1))
        self.channels = channels
        self.amplitude_max = amplitude_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, N, N)`` normalised amplitudes -> ``(B, C, N, N)`` complex patches."""
        out = self.project(self.blocks(self.lift(x)))
        return complex_object(out[:, : self.channels], out[:, self.channels :], self.amplitude_max)
