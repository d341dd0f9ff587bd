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

import numpy as np
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


def _weighted_sums(
    patches: torch.Tensor, positions: torch.Tensor, weight: torch.Tensor, shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_k T(pos_k)[w O_k]`` and ``sum_k T(pos_k)[w]`` on a canvas of ``shape``."""
    numerator = scatter_patches((patches * weight)[None], positions[None], shape)[0]
    denominator = scatter_patches(weight.expand(patches.shape).contiguous()[None], positions[None], shape)[0]
    return numerator, denominator


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
        numerator, denominator = _weighted_sums(
            patches.to(self.device, self._numerator.dtype), positions.to(self.device), self.weight, self.shape
        )
        self._numerator += numerator
        self._denominator += denominator

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


class GrowingStitcher:
    """A stitched object whose canvas grows as the scan reaches new ground (live reconstruction).

    Positions stay in the scan's own frame (object pixels); the canvas holds them shifted by
    ``origin``. The sums are those of :class:`PatchStitcher`; a region refined elsewhere can be laid
    over the stitched object (:meth:`hand_over`).
    """

    def __init__(self, weight: torch.Tensor, device: torch.device, margin: int | None = None):
        self.size = int(weight.shape[-1])
        self.weight = weight.to(device, torch.float32)
        self.device = device
        self.margin = margin if margin is not None else 2 * self.size
        self.origin = np.zeros(2, dtype=np.int64)
        self.numerator = torch.zeros((0, 0), dtype=torch.complex64, device=device)
        self.denominator = torch.zeros((0, 0), dtype=torch.float32, device=device)
        self.refined = torch.zeros((0, 0), dtype=torch.complex64, device=device)
        self.refined_weight = torch.zeros((0, 0), dtype=torch.float32, device=device)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.numerator.shape)  # type: ignore[return-value]

    def _fit(self, positions: np.ndarray) -> None:
        """Grow the canvas (by a margin beyond what is needed) until it holds patches at ``positions``."""
        half = self.size // 2
        need_low = np.floor(positions.min(axis=0)).astype(np.int64) - half - 1
        need_high = np.ceil(positions.max(axis=0)).astype(np.int64) + half + 2
        if not self.numerator.numel():
            low, high = need_low - self.margin, need_high + self.margin
        else:
            have_low, have_high = self.origin, self.origin + np.asarray(self.shape)
            if np.all(need_low >= have_low) and np.all(need_high <= have_high):
                return
            low = np.where(need_low < have_low, need_low - self.margin, have_low)
            high = np.where(need_high > have_high, need_high + self.margin, have_high)
        shape = tuple(int(v) for v in high - low)
        offset = self.origin - low
        grown = []
        for old in (self.numerator, self.denominator, self.refined, self.refined_weight):
            new = torch.zeros(shape, dtype=old.dtype, device=self.device)
            if old.numel():
                new[offset[0] : offset[0] + old.shape[0], offset[1] : offset[1] + old.shape[1]] = old
            grown.append(new)
        self.numerator, self.denominator, self.refined, self.refined_weight = grown
        self.origin = low

    def add(self, patches: torch.Tensor, positions: np.ndarray) -> None:
        """Stitch patches ``(k, N, N)`` at ``(k, 2)`` scan positions."""
        self._fit(positions)
        where = torch.from_numpy(positions - self.origin).to(self.device)
        numerator, denominator = _weighted_sums(patches.to(torch.complex64), where, self.weight, self.shape)
        self.numerator += numerator
        self.denominator += denominator

    def hand_over(self, obj: np.ndarray, illumination: np.ndarray, origin: np.ndarray) -> None:
        """Take a refined region (on a canvas placed at ``origin``) where it is well lit."""
        peak = float(illumination.max()) if illumination.size else 0.0
        if not peak > 0:
            return
        offset = origin - self.origin
        h, w = obj.shape
        if np.any(offset < 0) or offset[0] + h > self.shape[0] or offset[1] + w > self.shape[1]:
            return  # the canvas moved in a way this region no longer fits: the next round will
        lit = torch.from_numpy(illumination / peak > 0.1).to(self.device)
        region = (slice(offset[0], offset[0] + h), slice(offset[1], offset[1] + w))
        refined = torch.from_numpy(obj.astype(np.complex64)).to(self.device)
        self.refined[region] = torch.where(lit, refined, self.refined[region])
        self.refined_weight[region] = torch.where(
            lit, torch.ones_like(self.refined_weight[region]), self.refined_weight[region]
        )

    def weight_sum(self) -> np.ndarray:
        """The stitching denominator on the canvas (how well each pixel was seen)."""
        return self.denominator.cpu().numpy()

    def picture(self, threshold: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """The current object (refined where refined, else the network's) and its coverage."""
        covered = self.denominator > threshold
        safe = torch.where(covered, self.denominator, torch.ones_like(self.denominator))
        obj = torch.where(covered, self.numerator / safe, torch.zeros_like(self.numerator))
        obj = torch.where(self.refined_weight > 0, self.refined, obj)
        return obj.cpu().numpy(), (covered | (self.refined_weight > 0)).cpu().numpy()
