"""``reconstruction.npz``: the one file every reconstructing command writes, and its reader.

Arrays: ``object`` (complex64 ``(H, W)`` in the scan's frame: object pixels from the same
origin as the positions), ``amplitude`` and ``phase`` (float32), ``coverage`` (bool),
``weight_sum`` (float32, the stitching or illumination sum), ``positions`` (``(n, 2)`` float64
``(y, x)`` object pixels), ``pixel_size_m`` (float64, NaN when unknown), and whatever a command
adds beside them (a refined ``probe``, ``positions_refined``, ``background``, ``loss``, a live
canvas's ``origin``, and ``object_canvas``: the refined object on its whole canvas, also where
``object`` is zero for want of coverage, which a misfit needs where propagation mixes
neighbouring pixels, as the near field does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import ScanFileError, ScanValidationError


def write_reconstruction_npz(
    path: str | os.PathLike,
    obj: np.ndarray,
    *,
    coverage: np.ndarray,
    weight_sum: np.ndarray,
    positions: np.ndarray | None = None,
    pixel_size_m: float | None = None,
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``reconstruction.npz`` atomically (see the module for its arrays); returns the path."""
    path = Path(path)
    arrays = {
        "object": np.asarray(obj).astype(np.complex64),
        "amplitude": np.abs(obj).astype(np.float32),
        "phase": np.angle(obj).astype(np.float32),
        "coverage": np.asarray(coverage).astype(bool),
        "weight_sum": np.asarray(weight_sum).astype(np.float32),
        "pixel_size_m": np.float64(np.nan if pixel_size_m is None else pixel_size_m),
    }
    if positions is not None:
        arrays["positions"] = np.asarray(positions, dtype=np.float64)
    arrays.update(extra_arrays or {})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


@dataclass
class LoadedReconstruction:
    """A reconstruction read back from ``reconstruction.npz``."""

    path: Path
    object: np.ndarray
    coverage: np.ndarray
    weight_sum: np.ndarray
    positions: np.ndarray | None
    pixel_size_m: float | None
    probe: np.ndarray | None
    background: np.ndarray | None = None  # refined additive background (counts), if any
    canvas: np.ndarray | None = None  # the object on its whole canvas (``object_canvas``), if stored


def read_reconstruction(path: str | os.PathLike) -> LoadedReconstruction:
    """Read ``reconstruction.npz`` (or the folder holding it), as :func:`write_reconstruction_npz` writes it.

    Raises
    ------
    ScanFileError
        No such file, or not readable.
    ScanValidationError
        No ``object`` array, or arrays that disagree in shape.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "reconstruction.npz"
    if not path.is_file():
        raise ScanFileError("no such reconstruction file", source=str(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            if "object" not in data.files:
                raise ScanValidationError("not a reconstruction: no 'object' array", source=str(path))
            obj = data["object"]
            coverage = data["coverage"] if "coverage" in data.files else np.ones(obj.shape, bool)
            weight = data["weight_sum"] if "weight_sum" in data.files else coverage.astype(np.float32)
            positions = (
                data["positions_refined"]
                if "positions_refined" in data.files
                else (data["positions"] if "positions" in data.files else None)
            )
            pixel = float(data["pixel_size_m"]) if "pixel_size_m" in data.files else float("nan")
            probe = data["probe"] if "probe" in data.files else None
            background = data["background"] if "background" in data.files else None
            canvas = data["object_canvas"] if "object_canvas" in data.files else None
    except ScanValidationError:
        raise
    except (OSError, ValueError) as exc:
        raise ScanFileError(f"cannot read ({exc})", source=str(path)) from None
    if obj.ndim != 2 or coverage.shape != obj.shape:
        raise ScanValidationError(
            f"object {obj.shape} and coverage {coverage.shape} disagree", source=str(path)
        )
    if canvas is not None and canvas.shape != obj.shape:
        message = f"object_canvas {canvas.shape} differs from object {obj.shape}"
        raise ScanValidationError(message, source=str(path))
    return LoadedReconstruction(
        path=path, object=obj.astype(np.complex64), coverage=coverage.astype(bool),
        weight_sum=weight.astype(np.float32), positions=positions,
        pixel_size_m=None if not np.isfinite(pixel) else pixel, probe=probe, background=background,
        canvas=None if canvas is None else canvas.astype(np.complex64),
    )  # fmt: skip
