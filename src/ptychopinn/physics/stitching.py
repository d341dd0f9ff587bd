"""Stitching patches into the full object (docs/conventions.md, "Stitching").

    O(r) = sum_k T(pos_k)[w * O_k] / sum_k T(pos_k)[w]

computed with scatter-add (no Python loop over patches), in batches so that scans of any
length can be streamed through :class:`PatchStitcher`. Pixels whose weight sum is at or below
the coverage threshold were (essentially) never illuminated: they are zero in the object and
False in the returned coverage mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .translation import scatter_patches


@dataclass(frozen=True)
class StitchedObject:
    """A stitched full-field object.

    Attributes
    ----------
    object : torch.Tensor
        Complex object ``(H, W)`` in object pixels; zero where not covered.
    coverage : torch.Tensor
        Boolean ``(H, W)``, True where the weight sum exceeds the threshold.
    weight_sum : torch.Tensor
        Real ``(H, W)`` denominator ``sum_k T(pos_k)[w]``.
    """

    object: torch.Tensor
    coverage: torch.Tensor
    weight_sum: torch.Tensor


def canvas_shape(positions: torch.Tensor, patch_size: int) -> tuple[int, int]:
    """Canvas ``(H, W)`` covering every position plus ``N/2`` (and one bilinear pixel)."""
    if positions.numel() == 0:
        raise ValueError("cannot size a canvas for an empty scan")
    top = positions.amax(dim=0)
    return (
        math.ceil(float(top[0])) + patch_size // 2 + 1,
        math.ceil(float(top[1])) + patch_size // 2 + 1,
    )


class PatchStitcher:
    """Accumulates weighted patches onto a full-object canvas, batch by batch.

    Parameters
    ----------
    shape : (int, int)
        Canvas shape ``(H, W)`` in object pixels (positions are in the same frame).
    weight : torch.Tensor
        Real ``(N, N)`` window (e.g. :func:`ptychopinn.physics.probe_weight`).
    dtype : torch.dtype
        Complex dtype of the canvas.
    device : torch.device or str, optional
        Where the canvas lives (defaults to the weight's device).
    """

    def __init__(self, shape: tuple[int, int], weight: torch.Tensor, dtype=torch.complex64, device=None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.device = torch.device(device) if device is not None else weight.device
        self.weight = weight.to(self.device, dtype=torch.empty(0, dtype=dtype).real.dtype)
        self._numerator = torch.zeros(self.shape, dtype=dtype, device=self.device)
        self._denominator = torch.zeros(self.shape, dtype=self.weight.dtype, device=self.device)

    def add(self, patches: torch.Tensor, positions: torch.Tensor) -> None:
        """Add patches ``(n, N, N)`` centred at ``positions`` ``(n, 2)`` (object pixels)."""
        if patches.ndim != 3 or positions.shape != (patches.shape[0], 2):
            raise ValueError(
                f"expected patches (n, N, N) and positions (n, 2), got {tuple(patches.shape)} "
                f"and {tuple(positions.shape)}"
            )
        patches = patches.to(self.device, self._numerator.dtype)
        positions = positions.to(self.device)
        self._numerator += scatter_patches((patches * self.weight)[None], positions[None], self.shape)[0]
        weights = self.weight.expand(patches.shape).contiguous()
        self._denominator += scatter_patches(weights[None], positions[None], self.shape)[0]

    def result(self, threshold: float = 1e-3) -> StitchedObject:
        """The stitched object; pixels with weight sum <= ``threshold`` are flagged uncovered."""
        covered = self._denominator > threshold
        safe = torch.where(covered, self._denominator, torch.ones_like(self._denominator))
        obj = torch.where(covered, self._numerator / safe, torch.zeros_like(self._numerator))
        return StitchedObject(object=obj, coverage=covered, weight_sum=self._denominator.clone())


def stitch_patches(
    patches: torch.Tensor,
    positions: torch.Tensor,
    weight: torch.Tensor,
    shape: tuple[int, int] | None = None,
    threshold: float = 1e-3,
) -> StitchedObject:
    """Stitch patches into one object with a weighted scatter-add and a coverage mask.

    Parameters
    ----------
    patches : torch.Tensor
        Complex patches ``(n, N, N)``.
    positions : torch.Tensor
        Patch centres ``(n, 2)`` as ``(y, x)`` object pixels (sub-pixel allowed).
    weight : torch.Tensor
        Real window ``(N, N)``, normally the probe intensity normalised to max 1.
    shape : (int, int), optional
        Canvas shape; default :func:`canvas_shape`.
    threshold : float
        Coverage threshold on the weight sum (the window's maximum is 1).

    Returns
    -------
    StitchedObject
    """
    if shape is None:
        shape = canvas_shape(positions, patches.shape[-1])
    stitcher = PatchStitcher(shape, weight.to(patches.device), dtype=patches.dtype)
    stitcher.add(patches, positions)
    return stitcher.result(threshold)
