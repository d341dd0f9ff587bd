"""Probe operations for blind ptychography: incoherent modes and support.

Conventions (docs/conventions.md): a probe is complex ``(M, N, N)`` (or ``(N, N)``) whose modes add in
intensity; with orthonormal FFTs ``sum_m sum |P_m|^2`` is the expected photon count of a
pattern through a unit-amplitude object.
"""

from __future__ import annotations

import math

import torch

from .forward import as_probe_modes


def orthogonalize_modes(probe: torch.Tensor) -> torch.Tensor:
    """Orthogonal incoherent modes with the same mutual intensity, strongest first.

    The singular value decomposition of the mode stack ``P = U S V^H`` (modes as rows) gives
    the modes ``S V^H``: mutually orthogonal, sorted by power, and with the same
    ``sum_m P_m P_m^*`` (so the same diffraction intensities for every object).

    Parameters
    ----------
    probe : torch.Tensor
        Complex ``(M, N, N)``.

    Returns
    -------
    torch.Tensor
        Complex ``(M, N, N)``.
    """
    modes = as_probe_modes(probe)
    if modes.shape[0] == 1:
        return modes
    flat = modes.reshape(modes.shape[0], -1)
    _, singular, right = torch.linalg.svd(flat, full_matrices=False)
    return (singular[:, None].to(flat.dtype) * right).reshape(modes.shape)


def add_probe_modes(probe: torch.Tensor, total: int, fraction: float = 0.1) -> torch.Tensor:
    """Grow a probe to ``total`` incoherent modes, started orthogonal.

    New modes are the first mode times low-order polynomials ``x, y, xy, x^2 - y^2, ...``
    (the Hermite-like shapes partial coherence adds), orthogonalised against the existing
    modes. Together they carry ``fraction`` of the total power, which is kept unchanged.

    Parameters
    ----------
    probe : torch.Tensor
        Complex ``(N, N)`` or ``(M, N, N)``.
    total : int
        Number of modes wanted; a probe that already has as many is returned unchanged.
    fraction : float
        Share of the power given to the new modes, in (0, 1).

    Returns
    -------
    torch.Tensor
        Complex ``(total, N, N)`` (or the input modes).
    """
    modes = as_probe_modes(probe)
    have = modes.shape[0]
    if total <= have:
        return modes
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    size = modes.shape[-1]
    axis = (torch.arange(size, dtype=torch.float32, device=modes.device) - size / 2) / (size / 2)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    shapes = [x, y, x * y, x**2 - y**2, x**2 + y**2 - 0.5, x**3, y**3, x**2 * y, x * y**2]
    main = modes[0]
    basis = [modes[m].reshape(-1) for m in range(have)]
    new = []
    for k in range(total - have):
        shape = shapes[k % len(shapes)] * (1 + k // len(shapes))
        vector = (main * shape).reshape(-1)
        for other in basis:  # Gram-Schmidt against every mode so far
            vector = vector - (other.conj() @ vector) / (other.conj() @ other).real.clamp_min(1e-30) * other
        basis.append(vector)
        new.append(vector)
    power = float((modes.abs() ** 2).sum())
    old = modes * math.sqrt(1 - fraction)
    share = power * fraction / len(new)
    scaled = [v * math.sqrt(share / float((v.abs() ** 2).sum().clamp_min(1e-30))) for v in new]
    return torch.cat([old, torch.stack(scaled).reshape(-1, size, size).to(modes.dtype)])


def apply_probe_support(probe: torch.Tensor, radius_px: float) -> torch.Tensor:
    """Zero a probe outside a centred disk of ``radius_px`` pixels (a real-space support).

    Parameters
    ----------
    probe : torch.Tensor
        Complex ``(..., N, N)``.
    radius_px : float
        Disk radius in probe pixels, about the centre pixel ``(N/2, N/2)``.
    """
    size = probe.shape[-1]
    axis = torch.arange(size, device=probe.device, dtype=torch.float32) - size / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    inside = (y**2 + x**2) <= radius_px**2
    return probe * inside.to(probe.dtype)
