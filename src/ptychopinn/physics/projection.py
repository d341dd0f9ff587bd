"""Data consistency: pull a group's object region towards its measured diffraction amplitudes.

One simultaneous error-reduction / PIE step over the C patterns of a group (docs/conventions.md,
forward model; Rodenburg & Maiden's update with the step normalised by the illumination):

    psi_cm  = P_m * Crop_N(T(-r_c)[O])                          exit waves
    psi'_cm = F^-1[ F[psi_cm] * sqrt(I_c) / sqrt(sum_m |F[psi_cm]|^2) ]   measured modulus
    O      <- O + alpha * sum_c T(+r_c)[ sum_m conj(P_m) (psi'_cm - psi_cm) ]
                         / (sum_c T(+r_c)[ sum_m |P_m|^2 ] + eps max(.))

A region that already explains its patterns is a fixed point. Used as a layer by the
``unrolled`` generator; differentiable throughout.
"""

from __future__ import annotations

import torch

from .forward import as_probe_modes
from .propagation import far_field, far_field_inverse
from .translation import extract_patches, scatter_patches


def replace_modulus(waves: torch.Tensor, amplitude: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Impose a measured modulus on detector waves, keeping their phases.

    Parameters
    ----------
    waves : torch.Tensor
        Complex detector waves ``(..., M, N, N)`` of M incoherent probe modes.
    amplitude : torch.Tensor
        Measured amplitudes ``sqrt(I)`` ``(..., N, N)``; the modes share it in proportion to
        their present intensity (``sum_m |out_m|^2 = amplitude^2``).

    Returns
    -------
    torch.Tensor
        Waves of the same shape.
    """
    total = torch.sqrt((waves.real**2 + waves.imag**2).sum(dim=-3, keepdim=True))
    return waves * (amplitude.unsqueeze(-3) / total.clamp_min(eps))


def data_consistency_step(
    region: torch.Tensor,
    positions: torch.Tensor,
    probe: torch.Tensor,
    amplitude: torch.Tensor,
    *,
    step: torch.Tensor | float = 1.0,
    match_energy: bool = False,
    regularisation: float = 1e-3,
) -> torch.Tensor:
    """One data-consistency update of each group's region (see the module docstring).

    Parameters
    ----------
    region : torch.Tensor
        Complex regions ``(B, H, W)``.
    positions : torch.Tensor
        Patch centres on the region canvas ``(B, C, 2)`` (``(y, x)`` pixels).
    probe : torch.Tensor
        Complex probe ``(N, N)`` or modes ``(M, N, N)``.
    amplitude : torch.Tensor
        Measured amplitudes ``(B, C, N, N)`` in the probe's units (``sqrt`` of counts), or
        in any units with ``match_energy``.
    step : float or torch.Tensor
        alpha (a scalar, possibly a learned one).
    match_energy : bool
        Rescale each group's measured amplitudes to the energy of its present exit waves
        first: for inputs normalised by an unknown constant (the network's ``x``). The
        region's overall amplitude is then left as it is.
    regularisation : float
        eps: keeps the step finite where the region is barely illuminated.

    Returns
    -------
    torch.Tensor
        The updated regions ``(B, H, W)``.
    """
    modes = as_probe_modes(probe).to(region.dtype)
    size = modes.shape[-1]
    patches = extract_patches(region, positions, size)  # (B, C, N, N)
    exit_waves = patches.unsqueeze(-3) * modes  # (B, C, M, N, N)
    detector = far_field(exit_waves)
    if match_energy:
        model_energy = (detector.real**2 + detector.imag**2).sum(dim=(-4, -3, -2, -1))
        measured_energy = (amplitude**2).sum(dim=(-3, -2, -1))
        scale = torch.sqrt(model_energy / measured_energy.clamp_min(1e-12))
        amplitude = amplitude * scale.view(-1, 1, 1, 1)
    corrected = far_field_inverse(replace_modulus(detector, amplitude.to(detector.real.dtype)))
    numerator = (modes.conj() * (corrected - exit_waves)).sum(dim=-3)  # (B, C, N, N)
    height, width = region.shape[-2:]
    update = scatter_patches(numerator, positions, (height, width))
    intensity = (modes.real**2 + modes.imag**2).sum(dim=0).expand(patches.shape).contiguous()
    illumination = scatter_patches(intensity, positions, (height, width))
    floor = regularisation * illumination.amax(dim=(-2, -1), keepdim=True)
    return region + step * update / (illumination + floor)
