"""Building blocks shared by the generators."""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions with ReLU: the PtychoPINN encoder/decoder unit."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class SpectralConv2d(nn.Module):
    """Fourier-space linear layer of a neural operator.

    ``y = irfft2( W . rfft2(x) )`` on the lowest ``modes`` frequencies. The real FFT halves
    the last axis only, so the other axis keeps **both** signs of frequency: one weight
    block for rows ``0..m-1`` and one for rows ``-m..-1`` (docs/conventions.md, "Pitfalls").

    Spectral arithmetic always runs in float32/complex64 (FFTs in half precision are not
    supported for arbitrary sizes), whatever the surrounding precision.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        scale = 1.0 / math.sqrt(in_channels * out_channels)
        # complex weights stored as real pairs: any optimiser and precision plugin handles them
        self.weight_pos = nn.Parameter(scale * torch.randn(in_channels, out_channels, modes, modes, 2))
        self.weight_neg = nn.Parameter(scale * torch.randn(in_channels, out_channels, modes, modes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        rows = min(self.modes, height // 2)
        cols = min(self.modes, width // 2 + 1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            spectrum = torch.fft.rfft2(x.float(), norm="ortho")
            out = torch.zeros(
                x.shape[0], self.out_channels, height, width // 2 + 1,
                dtype=spectrum.dtype, device=x.device,
            )  # fmt: skip
            w_pos = torch.view_as_complex(self.weight_pos.float().contiguous())[:, :, :rows, :cols]
            w_neg = torch.view_as_complex(self.weight_neg.float().contiguous())[:, :, :rows, :cols]
            out[:, :, :rows, :cols] = torch.einsum("bixy,ioxy->boxy", spectrum[:, :, :rows, :cols], w_pos)
            out[:, :, -rows:, :cols] = torch.einsum("bixy,ioxy->boxy", spectrum[:, :, -rows:, :cols], w_neg)
            result = torch.fft.irfft2(out, s=(height, width), norm="ortho")
        return result.to(x.dtype)


class FNOBlock(nn.Module):
    """Residual Fourier-operator block: ``x + GELU(K x + W x)`` (spectral + local 1x1 conv)."""

    def __init__(self, channels: int, modes: int):
        super().__init__()
        self.spectral = SpectralConv2d(channels, channels, modes)
        self.local = nn.Conv2d(channels, channels, 1)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.activation(self.spectral(x) + self.local(x))


class ResidualBlock(nn.Module):
    """``x + conv(GELU(conv(x)))``, the bottleneck unit of the hybrid generator."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def complex_object(
    amplitude_logits: torch.Tensor, phase_logits: torch.Tensor, amplitude_max: float
) -> torch.Tensor:
    """Object patches ``a exp(i phi)`` with ``a = a_max sigmoid(.)`` and ``phi = pi tanh(.)``.

    At initialisation (logits near zero) the object is ``a_max / 2`` with zero phase.
    Computed in float32: the physics downstream is complex64.
    """
    amplitude = amplitude_max * torch.sigmoid(amplitude_logits.float())
    phase = math.pi * torch.tanh(phase_logits.float())
    return torch.polar(amplitude, phase)
