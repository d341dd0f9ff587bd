"""Synthetic complex objects (transmission functions) for simulated scans.

Each generator makes two independent maps in ``[0, 1]`` (one for the amplitude, one for the
phase) from a seeded :class:`numpy.random.Generator`; :func:`make_object` turns them into

    O = a * exp(i phi),  a = 1 - (1 - amplitude_min) * m_a,  phi = phase_range * (m_phi - 1/2)

so the amplitude lies in ``[amplitude_min, 1]`` and the phase spans ``phase_range`` radians
around zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage

OBJECT_KINDS = ("lines", "grf", "dead_leaves", "natural")

# Grey-scale images that ship inside scikit-image (no download needed).
_NATURAL_IMAGES = ("camera", "moon", "coins", "text", "brick", "grass", "gravel", "clock", "cell")


def _normalise(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def random_lines(
    shape: tuple[int, int],
    rng: np.random.Generator,
    n_lines: int | None = None,
    blur_px: float = 1.0,
) -> np.ndarray:
    """Random anti-aliased line segments of random brightness, lightly blurred; in ``[0, 1]``.

    Parameters
    ----------
    shape : (int, int)
        Map size ``(H, W)``.
    rng : numpy.random.Generator
    n_lines : int, optional
        Number of segments; default scales with the area (about one per 500 pixels).
    blur_px : float
        Gaussian blur (pixels) that band-limits the map.
    """
    from skimage.draw import line_aa

    height, width = shape
    n_lines = n_lines if n_lines is not None else max(4, height * width // 500)
    canvas = np.zeros(shape, dtype=np.float64)
    starts = rng.uniform(0, 1, size=(n_lines, 2)) * (height - 1, width - 1)
    angles = rng.uniform(0, np.pi, size=n_lines)
    lengths = rng.uniform(0.1, 0.5, size=n_lines) * min(height, width)
    ends = starts + lengths[:, None] * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    ends = np.clip(ends, 0, (height - 1, width - 1))
    brightness = rng.uniform(0.3, 1.0, size=n_lines)
    for (r0, c0), (r1, c1), value in zip(starts.astype(int), ends.astype(int), brightness, strict=True):
        rr, cc, aa = line_aa(r0, c0, r1, c1)
        np.maximum.at(canvas, (rr, cc), aa * value)
    return _normalise(ndimage.gaussian_filter(canvas, blur_px))


def gaussian_random_field(
    shape: tuple[int, int], rng: np.random.Generator, correlation_px: float = 4.0
) -> np.ndarray:
    """Gaussian random field with a Gaussian correlation of ``correlation_px``; in ``[0, 1]``."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    spectrum = np.exp(-2 * (np.pi * correlation_px) ** 2 * (fy**2 + fx**2))
    return _normalise(np.fft.ifft2(np.fft.fft2(noise) * spectrum).real)


def dead_leaves(
    shape: tuple[int, int],
    rng: np.random.Generator,
    n_leaves: int | None = None,
    radius_range: tuple[float, float] = (2.0, 30.0),
    blur_px: float = 0.7,
) -> np.ndarray:
    """Dead-leaves model: occluding disks with power-law radii (scale-invariant); in ``[0, 1]``.

    Radii follow ``p(r) ~ r^-3`` between ``radius_range``; later disks hide earlier ones.
    """
    height, width = shape
    n_leaves = n_leaves if n_leaves is not None else max(50, height * width // 60)
    r_min, r_max = radius_range
    u = rng.uniform(size=n_leaves)
    radii = 1.0 / np.sqrt(u / r_max**2 + (1 - u) / r_min**2)  # inverse CDF of r^-3
    centres = rng.uniform(0, 1, size=(n_leaves, 2)) * (height, width)
    values = rng.uniform(size=n_leaves)
    canvas = np.full(shape, rng.uniform(), dtype=np.float64)
    for (cy, cx), r, value in zip(centres, radii, values, strict=True):
        y0, y1 = max(0, int(cy - r)), min(height, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(width, int(cx + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        canvas[y0:y1, x0:x1][inside] = value
    return _normalise(ndimage.gaussian_filter(canvas, blur_px))


@functools.cache
def _shipped_image(name: str) -> np.ndarray:
    """A scikit-image picture as read-only float64 (read once per process: corpora draw thousands)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
    image.setflags(write=False)
    return image


def natural_image(shape: tuple[int, int], rng: np.random.Generator, name: str | None = None) -> np.ndarray:
    """A grey-scale natural image shipped with scikit-image, randomly cropped and resized.

    Parameters
    ----------
    name : str, optional
        One of the shipped images; default: drawn at random.
    """
    from skimage.transform import resize

    name = name if name is not None else str(rng.choice(_NATURAL_IMAGES))
    if name not in _NATURAL_IMAGES:
        raise ValueError(f"unknown natural image '{name}'; choose from {', '.join(_NATURAL_IMAGES)}")
    image = _shipped_image(name)
    # crop a random window with the target's aspect ratio, at least half the image
    aspect = shape[1] / shape[0]
    crop_h = min(image.shape[0], int(image.shape[1] / aspect))
    crop_h = int(crop_h * rng.uniform(0.5, 1.0))
    crop_w = min(image.shape[1], max(1, int(crop_h * aspect)))
    y0 = int(rng.integers(0, image.shape[0] - crop_h + 1))
    x0 = int(rng.integers(0, image.shape[1] - crop_w + 1))
    window = resize(image[y0 : y0 + crop_h, x0 : x0 + crop_w], shape, order=1, anti_aliasing=True)
    # stretch the 1st..99th percentiles to [0, 1] so a few extreme pixels don't flatten the map
    low, high = np.percentile(window, [1, 99])
    return _normalise(np.clip(window, low, high))


def _natural_pair(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    first, second = rng.choice(len(_NATURAL_IMAGES), size=2, replace=False)
    return (
        natural_image(shape, rng, _NATURAL_IMAGES[first]),
        natural_image(shape, rng, _NATURAL_IMAGES[second]),
    )


_GENERATORS: dict[str, Callable[[tuple[int, int], np.random.Generator], np.ndarray]] = {
    "lines": random_lines,
    "grf": gaussian_random_field,
    "dead_leaves": dead_leaves,
}


def make_object(
    kind: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    phase_range: float = np.pi,
    amplitude_min: float = 0.5,
) -> np.ndarray:
    """A complex object of a given kind; amplitude and phase come from independent maps.

    Parameters
    ----------
    kind : {"lines", "grf", "dead_leaves", "natural"}
        ``natural`` takes amplitude and phase from two different scikit-image pictures.
    shape : (int, int)
        Object size ``(H, W)`` in pixels.
    rng : numpy.random.Generator
        Fixes everything random.
    phase_range : float
        Peak-to-peak phase (rad).
    amplitude_min : float
        Lowest amplitude, in ``[0, 1]`` (1 = a pure phase object).

    Returns
    -------
    numpy.ndarray
        complex64 ``(H, W)``.
    """
    if kind not in OBJECT_KINDS:
        raise ValueError(f"unknown object kind '{kind}'; choose from {', '.join(OBJECT_KINDS)}")
    if not 0.0 <= amplitude_min <= 1.0:
        raise ValueError(f"amplitude_min must lie in [0, 1], got {amplitude_min}")
    if not phase_range >= 0:
        raise ValueError(f"phase_range must be >= 0, got {phase_range}")
    if kind == "natural":
        amp_map, phase_map = _natural_pair(shape, rng)
    else:
        amp_map, phase_map = _GENERATORS[kind](shape, rng), _GENERATORS[kind](shape, rng)
    amplitude = 1.0 - (1.0 - amplitude_min) * amp_map
    phase = phase_range * (phase_map - 0.5)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)
