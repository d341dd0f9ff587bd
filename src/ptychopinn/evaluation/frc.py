"""Fourier ring correlation (FRC) with the 1/2-bit threshold (van Heel & Schatz, 2005)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FRCResult:
    """An FRC curve and the resolution where it crosses the 1/2-bit threshold.

    Attributes
    ----------
    frequency : numpy.ndarray
        Ring centres in cycles per pixel (0 .. 0.5).
    frc : numpy.ndarray
        Correlation per ring.
    threshold : numpy.ndarray
        1/2-bit threshold per ring.
    resolution_px : float
        Half-period resolution in pixels, ``1 / (2 f_c)`` at the first crossing ``f_c``
        above the lowest rings (see :data:`LOWEST_RINGS`); the Nyquist limit, 1 pixel, when
        the curve never crosses there.
    resolution_m : float or None
        The same in metres, when the pixel size is known.
    """

    frequency: np.ndarray = field(repr=False)
    frc: np.ndarray = field(repr=False)
    threshold: np.ndarray = field(repr=False)
    resolution_px: float
    resolution_m: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "resolution_px": self.resolution_px,
            "resolution_m": self.resolution_m,
            "threshold": "1/2-bit",
            "frequency_cycles_per_px": self.frequency.tolist(),
            "frc": self.frc.tolist(),
        }


#: The lowest rings, never taken as the crossing: at least 3, and 1/20 of all. They hold few
#: pixels and the window's and the mean's leftovers; a dip there says nothing of resolution.
LOWEST_RINGS = (3, 20)


def lowest_rings(n_rings: int) -> int:
    """How many of ``n_rings`` rings, from the centre, are skipped when seeking the crossing."""
    minimum, share = LOWEST_RINGS
    return max(minimum, n_rings // share)


def half_bit_threshold(pixels_per_ring: np.ndarray) -> np.ndarray:
    """The 1/2-bit information threshold for rings holding ``n`` pixels."""
    root = np.sqrt(np.maximum(pixels_per_ring, 1))
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def fourier_ring_correlation(
    first: np.ndarray, second: np.ndarray, *, pixel_size_m: float | None = None, apodize: bool = True
) -> FRCResult:
    """FRC between two images of the same field (real or complex), ring by ring.

    ``FRC(r) = Re sum F1 F2* / sqrt(sum |F1|^2 sum |F2|^2)`` over the pixels of ring r.
    Each image's mean is removed and, with ``apodize``, a Hann window tapers the edges so
    that the image border does not correlate by itself.

    Parameters
    ----------
    first, second : numpy.ndarray
        Images ``(H, W)`` on the same grid (register them first).
    pixel_size_m : float, optional
        Pixel size, for the resolution in metres.
    apodize : bool
        Apply a 2-D Hann window.

    Returns
    -------
    FRCResult
    """
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"FRC needs two images of one shape, got {first.shape} and {second.shape}")
    height, width = first.shape
    a = first - first.mean()
    b = second - second.mean()
    if apodize:
        window = np.hanning(height)[:, None] * np.hanning(width)[None, :]
        a, b = a * window, b * window
    fa = np.fft.fftshift(np.fft.fft2(a))
    fb = np.fft.fftshift(np.fft.fft2(b))
    fy = np.fft.fftshift(np.fft.fftfreq(height))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(width))[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    n_rings = min(height, width) // 2
    step = 0.5 / n_rings
    ring = np.floor(radius / step).astype(int)
    inside = ring < n_rings
    ring, cross = ring[inside], (fa * np.conj(fb))[inside]
    pa, pb = (np.abs(fa) ** 2)[inside], (np.abs(fb) ** 2)[inside]
    numerator = np.bincount(ring, weights=cross.real, minlength=n_rings)
    power_a = np.bincount(ring, weights=pa, minlength=n_rings)
    power_b = np.bincount(ring, weights=pb, minlength=n_rings)
    counts = np.bincount(ring, minlength=n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.where(power_a * power_b > 0, numerator / np.sqrt(power_a * power_b), 0.0)
    frequency = (np.arange(n_rings) + 0.5) * step
    threshold = half_bit_threshold(counts)
    skip = min(lowest_rings(n_rings), n_rings - 1)
    below = np.flatnonzero(frc[skip:] < threshold[skip:])
    crossing = frequency[below[0] + skip] if below.size else 0.5
    resolution_px = float(1 / (2 * crossing))
    return FRCResult(
        frequency=frequency,
        frc=frc,
        threshold=threshold,
        resolution_px=resolution_px,
        resolution_m=None if pixel_size_m is None else resolution_px * pixel_size_m,
    )
