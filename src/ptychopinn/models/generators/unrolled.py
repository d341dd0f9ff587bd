"""``unrolled``: a network guess refined by a few learned data-consistency steps through the probe.

A single diffraction pattern leaves its object patch badly determined; a group of C
overlapping ones pins it down far better (``benchmarks/bench_information.py``). This
generator lets the network use that, with the known physics as layers (deep unrolling):

    O_c^0 = E(x_c)                                     per-pattern guess (an FNO, shared)
    O^0   = merge_w(O_c^0 at r_c)                       the group's region, probe-weighted
    O^k   = DC_k(O^(k-1)) + R_k(DC_k(O^(k-1)))          k = 1..K
    O_c   = T(r_c)^-1 [O^K]                             the patches

DC_k is :func:`~ptychopinn.physics.data_consistency_step` with a learned step alpha_k (the
measured amplitudes are the network input, energy-matched to the present estimate, so no
calibration is needed); R_k is a small learned correction, zero at initialisation, so an
untrained stack starts as K plain projection steps. It is still one fixed forward pass per
group (no optimisation at inference); K = 0 is the per-pattern FNO with a merge.
"""

from __future__ import annotations

import torch
from torch import nn

from ...physics import (
    data_consistency_step,
    extract_patches,
    merge_patches,
    probe_weight,
    region_positions,
    region_size,
)
from .base import Generator, register_generator
from .fno import FNOGenerator
from .layers import FNOBlock


class RegionCorrection(nn.Module):
    """``R_k``: real and imaginary parts -> FNO block -> a complex residual (zero at start)."""

    def __init__(self, width: int, modes: int):
        super().__init__()
        self.lift = nn.Conv2d(2, width, 1)
        self.block = FNOBlock(width, modes)
        self.project = nn.Conv2d(width, 2, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, region: torch.Tensor) -> torch.Tensor:
        out = self.project(self.block(self.lift(torch.stack([region.real, region.imag], dim=1))))
        return torch.complex(out[:, 0], out[:, 1])


@register_generator("unrolled")
class UnrolledGenerator(Generator):
    """Per-pattern FNO guess -> K x (data consistency + learned correction) -> patches.

    Parameters
    ----------
    channels : int
        C (any value; the encoder is shared by the patterns).
    size : int
        N.
    width, depth, modes, amplitude_max :
        Of the per-pattern FNO encoder (:class:`FNOGenerator` with one channel: an ``fno``
        bundle's weights fit it as they are).
    iterations : int
        K, unrolled data-consistency steps.
    corrections : bool
        A learned correction ``R_k`` after each step; without, the steps are plain
        projections (only their sizes alpha_k are learned).
    """

    uses_offsets = True
    uses_probe = True

    @classmethod
    def from_config(cls, config, channels: int, size: int) -> UnrolledGenerator:
        """Its own options: ``unroll_steps`` (K) and ``unroll_corrections``."""
        return cls(
            channels=channels,
            size=size,
            **cls.shared_options(config),
            iterations=config.unroll_steps,
            corrections=config.unroll_corrections,
        )

    def pretrained_target(self, source: nn.Module) -> nn.Module:
        """An ``fno`` network's weights start the per-pattern encoder (the steps stay plain)."""
        return self.encoder if isinstance(source, FNOGenerator) else self

    def __init__(
        self,
        channels: int,
        size: int,
        width: int = 16,
        depth: int = 3,
        modes: int = 12,
        amplitude_max: float = 2.0,
        iterations: int = 4,
        corrections: bool = True,
    ):
        super().__init__()
        self.encoder = FNOGenerator(
            1, size, width=width, depth=depth, modes=modes, amplitude_max=amplitude_max
        )
        self.steps = nn.Parameter(torch.ones(iterations))
        # empty without corrections: the steps stay plain projections
        self.corrections = nn.ModuleList(
            [RegionCorrection(width, modes) for _ in range(iterations)] if corrections else []
        )
        self.channels = channels

    def forward(self, x: torch.Tensor, offsets: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
        """``(B, C, N, N)`` amplitudes, ``(B, C, 2)`` offsets, ``(M, N, N)`` probe -> patches."""
        batch, channels, size, _ = x.shape
        guesses = self.encoder(x.reshape(batch * channels, 1, size, size)).reshape(
            batch, channels, size, size
        )
        offsets = offsets.to(torch.float64)
        probe = probe.detach()
        side = region_size(offsets, size)
        region, _ = merge_patches(guesses, offsets, probe_weight(probe), canvas_size=side)
        positions = region_positions(offsets, side)
        amplitude = x.float()
        for k, step in enumerate(self.steps):
            region = data_consistency_step(region, positions, probe, amplitude, step=step, match_energy=True)
            if self.corrections:
                region = region + self.corrections[k](region)
        return extract_patches(region, positions, size)
