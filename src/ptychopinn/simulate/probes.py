"""Illumination (probe) models for simulated scans.

Probes are returned normalised to unit power, ``sum |P|^2 = 1``; the simulator calibrates
the absolute scale (photon counts) afterwards.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..io import ScanFileError, ScanValidationError, read_scan
from ..io.safety import require_regular_file
from ..physics import fresnel_propagate

PROBE_KINDS = ("focused", "gaussian")


def _unit_power(probe: np.ndarray) -> np.ndarray:
    power = float(np.sum(np.abs(probe) ** 2))
    return (probe / np.sqrt(power)).astype(np.complex64)


def focused_probe(
    size: int,
    wavelength_m: float,
    pixel_size_m: float,
    *,
    aperture_fraction: float = 0.5,
    diameter_fraction: float = 1 / 3,
    defocus_m: float | None = None,
) -> np.ndarray:
    """A lens-focused probe, defocused by Fresnel propagation (a typical X-ray probe).

    The pupil is a soft-edged disk in the far field whose radius is ``aperture_fraction`` of
    the Nyquist frequency; its inverse Fourier transform is the in-focus (Airy) spot, which is
    then propagated by ``defocus_m`` with :func:`ptychopinn.physics.fresnel_propagate`.

    Parameters
    ----------
    size : int
        N, the probe array side in pixels.
    wavelength_m, pixel_size_m : float
        Wavelength and object-plane pixel size (m).
    aperture_fraction : float
        Pupil radius as a fraction of the Nyquist frequency, in ``(0, 1]``.
    diameter_fraction : float
        When ``defocus_m`` is None, the defocus is chosen so the geometric spot diameter is
        about this fraction of N (the beam's cone ``2 z lambda f_max``).
    defocus_m : float, optional
        Defocus distance (m); overrides ``diameter_fraction``.

    Returns
    -------
    numpy.ndarray
        complex64 ``(N, N)`` probe centred at ``(N//2, N//2)``, unit power.
    """
    if not 0 < aperture_fraction <= 1:
        raise ValueError(f"aperture_fraction must lie in (0, 1], got {aperture_fraction}")
    radius = aperture_fraction * size / 2
    coords = np.arange(size) - size // 2
    r = np.hypot(coords[:, None], coords[None, :])
    pupil = 0.5 * (1 - np.tanh((r - radius) / 1.0))
    focus = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    if defocus_m is None:
        if not 0 < diameter_fraction <= 1:
            raise ValueError(f"diameter_fraction must lie in (0, 1], got {diameter_fraction}")
        f_max = radius / (size * pixel_size_m)
        defocus_m = diameter_fraction * size * pixel_size_m / (2 * wavelength_m * f_max)
    field = fresnel_propagate(
        torch.from_numpy(focus.astype(np.complex64)), defocus_m, wavelength_m, pixel_size_m
    ).numpy()
    return _unit_power(field)


def gaussian_probe(size: int, *, sigma_px: float | None = None, curvature: float = 0.0) -> np.ndarray:
    """A Gaussian probe ``exp(-r^2 / (2 sigma^2)) * exp(i curvature r^2)``, unit power.

    Parameters
    ----------
    size : int
        N.
    sigma_px : float, optional
        Width (pixels) of the amplitude; default ``N / 12``.
    curvature : float
        Quadratic phase coefficient (rad / pixel^2), as from a slight defocus.
    """
    sigma_px = sigma_px if sigma_px is not None else size / 12
    if not sigma_px > 0:
        raise ValueError(f"sigma_px must be positive, got {sigma_px}")
    coords = np.arange(size) - size // 2
    r2 = coords[:, None] ** 2 + coords[None, :] ** 2
    return _unit_power(np.exp(-r2 / (2 * sigma_px**2)) * np.exp(1j * curvature * r2))


def probe_modes_from_file(path: str | os.PathLike) -> np.ndarray:
    """The probe as stored in a scan file (NPZ, CXI, ...), or in a ``.npy`` / ``.npz`` array.

    NPZ files may hold ``probe`` (``reconstruct``'s refined modes) or ``probeGuess``. The
    array is returned as stored: ``(N, N)`` or ``(modes, N, N)``, no scale applied.

    Raises
    ------
    ScanFileError, ScanValidationError
        Nothing readable, or no probe in the file.
    """
    path = os.fspath(path)
    try:
        return read_scan(path).probe
    except (ScanFileError, ScanValidationError) as scan_error:
        try:
            loaded = np.load(require_regular_file(path), allow_pickle=False)  # never a pipe
        except (OSError, ValueError, EOFError) as exc:
            raise ScanFileError(f"no probe could be read ({scan_error}; {exc})", source=path) from None
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            key = next((k for k in ("probe", "probeGuess") if k in loaded.files), None)
            if key is None:
                raise ScanValidationError(
                    f"no probe: expected key 'probe' or 'probeGuess' (found: {loaded.files})", source=path
                ) from None
            return loaded[key]


def probe_from_file(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """The probe of a scan file (NPZ or CXI), or of a ``.npy`` / ``.npz`` holding one array.

    NPZ files may hold ``probeGuess`` or ``probe``. The probe is rescaled to unit power.

    Parameters
    ----------
    path : str or os.PathLike
    size : int, optional
        Required N; a probe of another size is refused.
    """
    path = os.fspath(path)
    probe = probe_modes_from_file(path)
    probe = np.asarray(probe)
    while probe.ndim > 2 and probe.shape[-1] == 1:
        probe = probe[..., 0]
    if probe.ndim == 3:
        probe = probe[0]  # the dominant mode
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ScanValidationError(f"probe shape {probe.shape} is not (N, N)", source=path)
    if size is not None and probe.shape[0] != size:
        raise ScanValidationError(f"probe is {probe.shape[0]} pixels wide, expected N = {size}", source=path)
    if not np.isfinite(probe).all() or not np.any(probe):
        raise ScanValidationError("probe is zero or non-finite", source=path)
    return _unit_power(probe)
