"""An API for host applications: arrays in, arrays out, no files and no command line.

A host (ptychodus, a beamline pipeline, a notebook) holds the diffraction patterns, a
bad-pixel mask, positions in metres, a probe and the pixel geometry. :func:`reconstruct_arrays`
trains (optionally) and reconstructs from them and returns the object with its pixel size and
centre, reporting progress through a callback::

    from ptychopinn.workflows.embedded import reconstruct_arrays

    result = reconstruct_arrays(
        patterns, x_m=x, y_m=y, probe=probe, pixel_size_m=dx, bad_pixels=bad,
        callback=lambda step: print(step.epoch, step.loss),
    )
    result.object, result.pixel_size_m, result.center_m

Frame: ptychodus' convention. The object's centre ``center_m = (x, y)`` is the position of
pixel ``((W - 1) / 2, (H - 1) / 2)``; a position ``x_m`` lies at pixel
``(x_m - center_x) / dx + (W - 1) / 2``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io import Scan, ScanMetadata
from ..refine import RefinementProgress
from .reconstruction import ReconstructOptions, reconstruct_scan

log = logging.getLogger("ptychopinn")


@dataclass(frozen=True)
class ArrayReconstruction:
    """What :func:`reconstruct_arrays` returns (SI units, ptychodus' frame).

    Attributes
    ----------
    object : numpy.ndarray
        complex64 ``(H, W)``; 1 (free space) outside the scanned area.
    coverage : numpy.ndarray
        bool ``(H, W)``: the scanned area.
    pixel_size_m : float
        Object pixel size (m).
    center_m : (float, float)
        ``(x, y)`` metres of pixel ``((W - 1) / 2, (H - 1) / 2)``.
    probe : numpy.ndarray
        complex64 ``(modes, N, N)``, refined when asked for.
    x_m, y_m : numpy.ndarray
        ``(n,)`` positions (m), corrected when asked for.
    losses : list of float
        Refinement loss per epoch.
    start : str
        ``"model"``, ``"trained"`` or ``"constant"``: where the refinement started.
    timings_s : dict
    """

    object: np.ndarray
    coverage: np.ndarray
    pixel_size_m: float
    center_m: tuple[float, float]
    probe: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    losses: list[float]
    start: str
    timings_s: dict[str, float] = field(default_factory=dict)


def scan_from_arrays(
    patterns: np.ndarray,
    *,
    x_m: np.ndarray,
    y_m: np.ndarray,
    probe: np.ndarray,
    pixel_size_m: float,
    bad_pixels: np.ndarray | None = None,
    energy_ev: float | None = None,
    detector_distance_m: float | None = None,
    detector_pixel_size_m: float | None = None,
    indexes: np.ndarray | None = None,
) -> Scan:
    """A validated :class:`~ptychopinn.io.Scan` from a host's arrays.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(n, N, N)`` photon counts, zero frequency at the centre pixel.
    x_m, y_m : numpy.ndarray
        ``(n,)`` probe positions (m).
    probe : numpy.ndarray
        complex ``(N, N)`` or ``(modes, N, N)``.
    pixel_size_m : float
        Object (and probe) pixel size (m).
    bad_pixels : numpy.ndarray, optional
        bool ``(N, N)``, True where a detector pixel is bad: zeroed and left out of the fit.
    energy_ev, detector_distance_m, detector_pixel_size_m : float, optional
        Geometry, carried into written products.
    indexes : numpy.ndarray, optional
        Scan indexes of the patterns (default ``0 .. n-1``).
    """
    patterns = np.asarray(patterns)
    x_m, y_m = np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)
    if patterns.ndim != 3:
        raise ValueError(f"patterns must be (n, N, N), got shape {patterns.shape}")
    if x_m.shape != (len(patterns),) or y_m.shape != (len(patterns),):
        raise ValueError(
            f"x_m {x_m.shape} and y_m {y_m.shape} must both be ({len(patterns)},), one per pattern"
        )
    if not (np.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise ValueError(f"pixel_size_m must be positive, got {pixel_size_m!r}")
    mask = None
    if bad_pixels is not None:
        bad = np.asarray(bad_pixels, dtype=bool)
        if bad.shape != patterns.shape[1:]:
            raise ValueError(f"bad_pixels {bad.shape} must match the patterns {patterns.shape[1:]}")
        if bad.any():
            patterns = np.where(bad, 0, patterns)
            mask = ~bad
    size = patterns.shape[-1]
    # object pixel (0, 0) at these metres: the nearest patch edge lands on the grid's edge
    origin_x = float(x_m.min()) - pixel_size_m * (size / 2)
    origin_y = float(y_m.min()) - pixel_size_m * (size / 2)
    positions = np.stack([(y_m - origin_y) / pixel_size_m, (x_m - origin_x) / pixel_size_m], axis=1)
    return Scan(
        diffraction=patterns.astype(np.float32),
        positions=positions,
        probe=np.asarray(probe),
        mask=mask,
        scan_index=None if indexes is None else np.asarray(indexes),
        metadata=ScanMetadata(
            energy_ev=energy_ev,
            detector_distance_m=detector_distance_m,
            detector_pixel_size_m=detector_pixel_size_m,
            object_pixel_size_m=pixel_size_m,
            origin_x_m=origin_x,
            origin_y_m=origin_y,
        ),
    )


def reconstruct_arrays(
    patterns: np.ndarray,
    *,
    x_m: np.ndarray,
    y_m: np.ndarray,
    probe: np.ndarray,
    pixel_size_m: float,
    bad_pixels: np.ndarray | None = None,
    options: ReconstructOptions | None = None,
    training_dir: str | os.PathLike | None = None,
    callback: Callable[[RefinementProgress], None] | None = None,
) -> ArrayReconstruction:
    """Reconstruct from arrays: optional network (given or trained), then physics refinement.

    Parameters
    ----------
    patterns, x_m, y_m, probe, pixel_size_m, bad_pixels
        See :func:`scan_from_arrays`.
    options : ReconstructOptions, optional
        As for ``reconstruct``: ``model`` (a bundle whose prediction starts the refinement),
        ``train_first`` (train a network on these patterns first, for
        ``train_time_budget_s``, in ``training_dir``, default a temporary folder), the
        ``refinement`` (default: L-BFGS) and the ``device``. Default: progress bars off (a host
        shows its own).
    callback : callable, optional
        Called after every refinement epoch with a :class:`~ptychopinn.refine.RefinementProgress`
        (``epoch``, ``loss``, ``elapsed_s``, ``snapshot()`` of the current object).

    Returns
    -------
    ArrayReconstruction
    """
    options = options if options is not None else ReconstructOptions(progress=False)
    scan = scan_from_arrays(patterns, x_m=x_m, y_m=y_m, probe=probe, pixel_size_m=pixel_size_m,
                            bad_pixels=bad_pixels)  # fmt: skip
    result = reconstruct_scan(scan, options, training_dir=training_dir, log=log.info, callback=callback)
    return _in_metres(result, scan)


def _in_metres(result: Any, scan: Scan) -> ArrayReconstruction:
    meta, dx = scan.metadata, scan.metadata.object_pixel_size_m
    recon, refined = result.reconstruction, result.refinement
    height, width = recon.object.shape
    return ArrayReconstruction(
        object=np.where(recon.coverage, recon.object, 1).astype(np.complex64),
        coverage=recon.coverage,
        pixel_size_m=dx,
        center_m=(meta.origin_x_m + dx * (width - 1) / 2, meta.origin_y_m + dx * (height - 1) / 2),
        probe=np.asarray(refined.probe, dtype=np.complex64),
        x_m=meta.origin_x_m + dx * recon.positions[:, 1],
        y_m=meta.origin_y_m + dx * recon.positions[:, 0],
        losses=list(refined.loss_history),
        start=result.start,
        timings_s=dict(result.timings),
    )
