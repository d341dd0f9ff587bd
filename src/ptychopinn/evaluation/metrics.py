"""Comparing a reconstruction with a ground-truth object (docs/conventions.md, "Evaluation").

Steps: restrict both to the region the scan covered; register the sub-pixel shift (phase
cross-correlation); remove the global phase offset (and optionally a linear phase ramp) by
least squares; scale the amplitude by least squares. Then, for amplitude and phase
separately: MAE, PSNR and SSIM with an explicit data range (the reference's max - min),
and the Pearson correlation (which exposes a flat, collapsed reconstruction).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity
from skimage.registration import phase_cross_correlation

from .frc import FRCResult, fourier_ring_correlation


@dataclass(frozen=True)
class ChannelMetrics:
    """Metrics of one real channel (amplitude or phase)."""

    mae: float
    psnr_db: float
    ssim: float
    pearson: float
    data_range: float
    frc: FRCResult | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mae": self.mae,
            "psnr_db": self.psnr_db,
            "ssim": self.ssim,
            "pearson": self.pearson,
            "data_range": self.data_range,
        }
        if self.frc is not None:
            out["frc_resolution_px"] = self.frc.resolution_px
            out["frc_resolution_m"] = self.frc.resolution_m
            out["frc"] = {k: v for k, v in self.frc.to_dict().items() if not k.startswith("resolution")}
        return out


@dataclass(frozen=True)
class ObjectComparison:
    """The result of :func:`compare_objects`."""

    amplitude: ChannelMetrics
    phase: ChannelMetrics
    shift_px: tuple[float, float]
    phase_offset_rad: float
    amplitude_scale: float
    region: tuple[int, int, int, int]  # row0, row1, col0, col1 (exclusive ends)
    aligned: np.ndarray = field(repr=False)
    reference: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "amplitude": self.amplitude.to_dict(),
            "phase": self.phase.to_dict(),
            "registration_shift_px": list(self.shift_px),
            "phase_offset_rad": self.phase_offset_rad,
            "amplitude_scale": self.amplitude_scale,
            "region": list(self.region),
        }


def covered_region(coverage: np.ndarray) -> tuple[int, int, int, int]:
    """A rectangle ``(row0, row1, col0, col1)`` (exclusive ends) lying wholly inside coverage.

    Holes inside the covered area are filled first. Starts from the bounding box of the
    covered pixels and peels off, one at a time, the edge row or column with the largest
    uncovered fraction until none is left: every compared pixel was reconstructed, and
    comparisons need no mask (SSIM works on rectangles).
    """
    # pinholes inside the covered area (a jittered scan's weaker spots) are covered area
    coverage = ndimage.binary_fill_holes(coverage)
    rows = np.flatnonzero(coverage.any(axis=1))
    cols = np.flatnonzero(coverage.any(axis=0))
    if rows.size == 0:
        raise ValueError("the coverage mask is empty: nothing to compare")
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    while r1 > r0 and c1 > c0:
        box = coverage[r0:r1, c0:c1]
        if box.all():
            return r0, r1, c0, c1
        gaps = {  # the fraction of each edge that is uncovered
            "top": float((~box[0]).mean()),
            "bottom": float((~box[-1]).mean()),
            "left": float((~box[:, 0]).mean()),
            "right": float((~box[:, -1]).mean()),
        }
        worst = max(gaps, key=gaps.get)
        if worst == "top":
            r0 += 1
        elif worst == "bottom":
            r1 -= 1
        elif worst == "left":
            c0 += 1
        else:
            c1 -= 1
    raise ValueError("the coverage mask holds no rectangle to compare")


def _channel(
    reference: np.ndarray, estimate: np.ndarray, pixel_size_m: float | None = None
) -> ChannelMetrics:
    data_range = float(reference.max() - reference.min())
    error = estimate - reference
    mse = float(np.mean(error**2))
    if data_range <= 0:
        psnr = float("nan")
    else:
        psnr = float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))
    ssim = (
        structural_similarity(reference, estimate, data_range=data_range) if data_range > 0 else float("nan")
    )
    if reference.std() > 0 and estimate.std() > 0:
        pearson = float(np.corrcoef(reference.ravel(), estimate.ravel())[0, 1])
    else:
        pearson = 0.0  # a flat image correlates with nothing
    frc = None
    if min(reference.shape) >= 8:
        frc = fourier_ring_correlation(reference, estimate, pixel_size_m=pixel_size_m)
    return ChannelMetrics(
        mae=float(np.mean(np.abs(error))),
        psnr_db=psnr,
        ssim=float(ssim),
        pearson=pearson,
        data_range=data_range,
        frc=frc,
    )


def remove_phase_ramp(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Remove a linear phase ramp ``a y + b x + c`` between estimate and reference (weighted LS)."""
    difference = np.angle(reference * np.conj(estimate))
    weights = (np.abs(reference) * np.abs(estimate)).ravel()
    yy, xx = np.mgrid[: estimate.shape[0], : estimate.shape[1]]
    design = np.stack([yy.ravel(), xx.ravel(), np.ones(estimate.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design * weights[:, None], difference.ravel() * weights, rcond=None)
    return estimate * np.exp(1j * (design @ coef).reshape(estimate.shape))


def compare_objects(
    reconstruction: np.ndarray,
    reference: np.ndarray,
    coverage: np.ndarray | None = None,
    *,
    register: bool = True,
    remove_ramp: bool = False,
    max_shift_px: float = 8.0,
    pixel_size_m: float | None = None,
) -> ObjectComparison:
    """Align a reconstruction to a ground truth and measure amplitude and phase quality.

    Parameters
    ----------
    reconstruction, reference : numpy.ndarray
        Complex objects of the same shape ``(H, W)``, on the same pixel grid.
    coverage : numpy.ndarray, optional
        Boolean ``(H, W)``; comparison uses the rectangle of :func:`covered_region`
        (default: everything).
    register : bool
        Register the sub-pixel shift by phase cross-correlation first.
    remove_ramp : bool
        Also remove a linear phase ramp.
    max_shift_px : float
        A registration shift larger than this is not applied (the cross-correlation of a
        failed, featureless reconstruction peaks anywhere); the reported shift is then zero.
    pixel_size_m : float, optional
        Object pixel size, to report FRC resolutions in metres too.

    Returns
    -------
    ObjectComparison
    """
    if reconstruction.shape != reference.shape:
        raise ValueError(
            f"reconstruction {reconstruction.shape} and reference {reference.shape} differ in shape"
        )
    if not np.isfinite(reconstruction).all():
        raise ValueError("the reconstruction holds NaN or inf values (did the solver diverge?)")
    coverage = np.ones(reference.shape, bool) if coverage is None else coverage
    r0, r1, c0, c1 = covered_region(coverage)
    ref = reference[r0:r1, c0:c1].astype(np.complex128)
    est = reconstruction[r0:r1, c0:c1].astype(np.complex128)
    shift = (0.0, 0.0)
    if register and min(ref.shape) >= 8:
        found, _, _ = phase_cross_correlation(ref, est, upsample_factor=20, normalization=None)
        if np.all(np.abs(found) <= max_shift_px):
            shift = (float(found[0]), float(found[1]))
            est = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(est), found))
    offset = float(np.angle(np.sum(ref * np.conj(est))))
    est = est * np.exp(1j * offset)
    if remove_ramp:
        est = remove_phase_ramp(est, ref)
    scale = float(np.sum(np.abs(ref) * np.abs(est)) / max(np.sum(np.abs(est) ** 2), 1e-30))
    aligned = scale * np.abs(est) * np.exp(1j * np.angle(est))
    return ObjectComparison(
        amplitude=_channel(np.abs(ref), np.abs(aligned), pixel_size_m),
        phase=_channel(np.angle(ref), np.angle(aligned), pixel_size_m),
        shift_px=shift,
        phase_offset_rad=offset,
        amplitude_scale=scale,
        region=(r0, r1, c0, c1),
        aligned=aligned.astype(np.complex64),
        reference=ref.astype(np.complex64),
    )
