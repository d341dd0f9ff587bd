"""``region``: encode each pattern in its own frame, merge where the patterns overlap, decode.

A group's C patterns see overlapping parts of one object region. A single pattern leaves the
object patch badly determined (the far-field phase is lost); a few overlapping ones pin it
down far better, but only if the network knows where each pattern sits. This generator uses
the positions explicitly, through the same translation operators as the physics:

    f_c = E(x_c)                                   features in the frame of position c
    F   = sum_c T(r_c)[f_c] / sum_c T(r_c)[1]      merged on the group's region canvas (whole pixels)
    O   = D([F, coverage])                         the region's object, a exp(i phi)
    O_c = T(r_c)^-1 [O]                            the patches, consistent by construction

E and D are Fourier-neural-operator stacks; E is shared by all patterns, so any C and any
offsets (scan step, jitter, grouping) work, and C = 1 reduces to an FNO on one pattern.
"""

from __future__ import annotations

import torch
from torch import nn

from ...physics import extract_from_region, region_positions, region_size
from .base import Generator, register_generator
from .layers import FNOBlock, complex_object


@register_generator("region")
class RegionGenerator(Generator):
    """Per-pattern encoder -> merge at the scan offsets -> region decoder -> patches.

    Parameters
    ----------
    channels : int
        C (any value works: the encoder is shared by the patterns).
    size : int
        N.
    width : int
        Feature channels of encoder and decoder.
    depth : int
        Spectral blocks in all: ``depth - depth // 2`` in the encoder (diffraction to object
        features, the harder half), ``max(1, depth // 2)`` in the decoder.
    modes : int
        Fourier modes kept per axis and sign.
    amplitude_max : float
        Amplitude bound of the output.
    """

    #: forward takes the group offsets (``PtychoPINN`` passes them)
    uses_offsets = True

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
        encoder_depth, decoder_depth = depth - depth // 2, max(1, depth // 2)
        self.lift = nn.Conv2d(1, width, 1)
        self.encoder = nn.Sequential(*[FNOBlock(width, modes) for _ in range(encoder_depth)])
        self.join = nn.Conv2d(width + 1, width, 1)  # merged features + how many patterns cover
        self.decoder = nn.Sequential(*[FNOBlock(width, modes) for _ in range(decoder_depth)])
        self.project = nn.Sequential(nn.Conv2d(width, width, 1), nn.GELU(), nn.Conv2d(width, 2, 1))
        self.channels = channels
        self.amplitude_max = amplitude_max

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``(B, C, N, N)`` normalised amplitudes and ``(B, C, 2)`` offsets -> ``(B, C, N, N)`` patches."""
        batch, channels, size, _ = x.shape
        features = self.encoder(self.lift(x.reshape(batch * channels, 1, size, size)))
        features = features.reshape(batch, channels, -1, size, size)
        offsets = offsets.to(torch.float64)
        side = region_size(offsets, size)
        # features are placed at whole pixels (the network needs no sub-pixel precision here;
        # the patches are cut from the decoded region at the exact offsets below)
        corners = (torch.round(region_positions(offsets, side)) - size // 2).long().tolist()
        merged = features.new_zeros(batch, features.shape[2], side, side)
        coverage = features.new_zeros(batch, 1, side, side)
        for b, group in enumerate(corners):
            for c, (top, left) in enumerate(group):
                merged[b, :, top : top + size, left : left + size] += features[b, c]
                coverage[b, :, top : top + size, left : left + size] += 1.0
        merged = merged / coverage.clamp_min(1.0)
        coverage = coverage / channels
        out = self.project(self.decoder(self.join(torch.cat([merged, coverage], dim=1))))
        region = complex_object(out[:, 0], out[:, 1], self.amplitude_max)
        return extract_from_region(region, offsets, size)
