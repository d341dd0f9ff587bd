"""The overlap constraint: patches of one group must agree where they overlap.

See docs/conventions.md, "Overlap constraint".

    O_region = sum_k T(+r_k)[w * O_k] / sum_k T(+r_k)[w]      (merge)
    O'_k     = Crop_N( T(-r_k)[O_region] )                     (extract)

T is the bilinear translation of :mod:`ptychopinn.physics.translation` (scatter for merge,
interpolation for extract). Numerator and denominator use the *same* window and the *same*
translation, so patches that already agree come back unchanged: merge and extract are exact
inverses on consistent input (exactly for integer offsets, to interpolation accuracy for
sub-pixel ones). Canvas pixels whose denominator is below ``threshold`` are set to zero rather
than divided by a tiny number.
"""

from __future__ import annotations

import math

import torch

from .forward import as_probe_modes
from .translation import extract_patches, scatter_patches


def probe_weight(probe: torch.Tensor) -> torch.Tensor:
    """Merge window from a probe: total intensity ``sum_m |P_m|^2`` normalised to max 1.

    Parameters
    ----------
    probe : torch.Tensor
        Complex probe ``(N, N)`` or ``(M, N, N)``.

    Returns
    -------
    torch.Tensor
        Real ``(N, N)`` window in ``[0, 1]``.
    """
    modes = as_probe_modes(probe)
    intensity = (modes.real**2 + modes.imag**2).sum(dim=0)
    peak = intensity.max()
    if not peak > 0:
        raise ValueError("probe has zero intensity everywhere; cannot build a merge window")
    return intensity / peak


def disk_weight(size: int, radius: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Merge window that is 1 inside a central disk of ``radius`` pixels and 0 outside."""
    coords = torch.arange(size, device=device, dtype=dtype) - size // 2
    r2 = coords[:, None] ** 2 + coords[None, :] ** 2
    return (r2 <= radius**2).to(dtype)


def region_size(offsets: torch.Tensor, patch_size: int) -> int:
    """Smallest even canvas size that holds every patch of every group.

    Allows for the offsets, the half-pixel frame shift of :func:`region_positions` and the
    extra bilinear pixel.
    """
    reach = float(offsets.abs().max()) if offsets.numel() else 0.0
    size = patch_size + 2 * math.ceil(reach + 0.5) + 2
    return size + (size % 2)


def region_positions(offsets: torch.Tensor, canvas_size: int) -> torch.Tensor:
    """Canvas coordinates of a group's patches: offsets about the canvas centre ``M//2``.

    The frame is shifted by the fractional part of the first member's offset, so that it is
    anchored on a real scan position: when the scan positions are whole pixels, every patch
    lands on whole canvas pixels and merge/extract involve no interpolation at all. (Any
    common shift of the frame is allowed: merge and extract use the same coordinates.)
    """
    anchor = offsets[:, :1, :]
    centre = torch.tensor([canvas_size // 2, canvas_size // 2], dtype=offsets.dtype, device=offsets.device)
    return offsets - (anchor - torch.round(anchor)) + centre


def merge_patches(
    patches: torch.Tensor,
    offsets: torch.Tensor,
    weight: torch.Tensor,
    canvas_size: int | None = None,
    threshold: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge each group's patches into one region by weighted averaging.

    Parameters
    ----------
    patches : torch.Tensor
        Complex patches ``(B, C, N, N)``: C patches per group.
    offsets : torch.Tensor
        Offsets ``r_k = pos_k - centroid`` in pixels, ``(B, C, 2)`` as ``(y, x)``; the
        patches sit at :func:`region_positions` on the canvas.
    weight : torch.Tensor
        Real window ``(N, N)`` (see :func:`probe_weight`, :func:`disk_weight`).
    canvas_size : int, optional
        Side M of the square region canvas. Default: :func:`region_size`.
    threshold : float
        Canvas pixels with weight sum at or below this are set to zero.

    Returns
    -------
    region : torch.Tensor
        Merged regions ``(B, M, M)``.
    weight_sum : torch.Tensor
        The denominator ``sum_k T(r_k)[w]``, ``(B, M, M)``.
    """
    if patches.ndim != 4 or offsets.shape != (*patches.shape[:2], 2):
        raise ValueError(
            f"patches (B, C, N, N) and offsets (B, C, 2) disagree: {tuple(patches.shape)} vs "
            f"{tuple(offsets.shape)}"
        )
    n = patches.shape[-1]
    size = canvas_size if canvas_size is not None else region_size(offsets, n)
    canvas_positions = region_positions(offsets, size)
    w = weight.to(device=patches.device, dtype=patches.real.dtype)
    numerator = scatter_patches(patches * w, canvas_positions, (size, size))
    denominator = scatter_patches(w.expand(patches.shape).contiguous(), canvas_positions, (size, size))
    covered = denominator > threshold
    # where() on a safe denominator keeps gradients finite in the uncovered pixels.
    safe = torch.where(covered, denominator, torch.ones_like(denominator))
    region = torch.where(covered, numerator / safe, torch.zeros_like(numerator))
    return region, denominator


def extract_from_region(region: torch.Tensor, offsets: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut each group's patches back out of its merged region (inverse of :func:`merge_patches`).

    Parameters
    ----------
    region : torch.Tensor
        Regions ``(B, M, M)`` from :func:`merge_patches`.
    offsets : torch.Tensor
        Offsets ``(B, C, 2)`` in pixels.
    patch_size : int
        N.

    Returns
    -------
    torch.Tensor
        Patches ``(B, C, N, N)``.
    """
    return extract_patches(region, region_positions(offsets, region.shape[-1]), patch_size)


def enforce_overlap(
    patches: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor, threshold: float = 1e-6
) -> torch.Tensor:
    """Make a group's patches mutually consistent: merge them, then re-extract (``O'_k``)."""
    region, _ = merge_patches(patches, offsets, weight, threshold=threshold)
    return extract_from_region(region, offsets, patches.shape[-1])
