"""ptychodus' standard layout: ``diffraction.h5`` beside ``product.h5`` (read), products (write).

Read with h5py alone (ptychodus itself is not needed), following ptychodus 1.7's own
``load_diffraction_data`` / ``load_product`` and ``save_product``:

- ``diffraction.h5``: ``indexes`` ``(n,)``, ``patterns`` ``(n, H, W)`` counts with attributes
  ``detector_pixel_width_m`` / ``detector_pixel_height_m``, ``bad_pixels`` ``(H, W)`` (True =
  bad), optional ``probe_photon_counts``.
- ``product.h5``: root attributes (``name``, ``detector_object_distance_m``,
  ``photon_energy_eV`` or the older ``probe_energy_eV``, ``probe_photon_count``, ...),
  ``probe`` ``(H, W)``, ``(modes, H, W)`` or ``(opr, modes, H, W)`` with pixel sizes,
  ``object`` ``(H, W)`` or ``(layers, H, W)`` with ``center_x_m``, ``center_y_m`` and pixel
  sizes, ``probe_position_indexes`` / ``probe_position_x_m`` / ``probe_position_y_m`` (m),
  ``loss_epochs`` / ``loss_values``.

Positions: ptychodus puts the object centre ``(center_x_m, center_y_m)`` at pixel
``((W - 1) / 2, (H - 1) / 2)``, so a position ``x_m`` is at object pixel
``(x_m - center_x_m) / dx + (W - 1) / 2``: the same pixel coordinates that ptychodus writes to
the ``xcoords`` / ``ycoords`` of its PtychoPINN export. The metre frame is kept in the scan's
metadata (``origin_x_m``, ``origin_y_m``: where pixel (0, 0) is), so a product written back
puts every position at the same metres.

The product's object is ptychodus' current *estimate* (often a flat initial guess), not a
ground truth, so it does not become ``Scan.object`` (which the evaluation compares against).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .atomic import atomic_path
from .errors import ScanFileError, ScanValidationError
from .lazy import HDF5Patterns
from .registry import ScanFormat, register_format
from .safety import (
    HDF5_SIGNATURE,
    hdf5_contents,
    hdf5_dataset,
    open_hdf5,
    read_hdf5_array,
    require_regular_file,
)
from .scan import Scan, ScanMetadata

log = logging.getLogger("ptychopinn.io")

DIFFRACTION_FILE = "diffraction.h5"
PRODUCT_FILE = "product.h5"


def ptychodus_pair(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """``(diffraction.h5, product.h5)`` when ``path`` names ptychodus' layout, else None.

    ``path`` may be the directory holding both files or either file of the pair (the other
    is looked for beside it under its standard name).
    """
    path = Path(path)
    if path.is_dir():
        pair = (path / DIFFRACTION_FILE, path / PRODUCT_FILE)
        return pair if all(p.is_file() for p in pair) else None
    if not path.is_file():
        return None
    kind = hdf5_kind(path)
    if kind == "ptychodus-diffraction":
        product = path.with_name(PRODUCT_FILE)
        return (path, product) if product.is_file() else None
    if kind == "ptychodus-product":
        diffraction = path.with_name(DIFFRACTION_FILE)
        return (diffraction, path) if diffraction.is_file() else None
    return None


def hdf5_kind(path: str | os.PathLike) -> str | None:
    """``"cxi"``, ``"ptychodus-diffraction"``, ``"ptychodus-product"`` or None, from the keys."""
    try:
        # only the root's names: no dataset is read, no link followed
        with h5py.File(require_regular_file(path), "r") as handle:
            keys = set(handle.keys())
    except (OSError, RuntimeError, ValueError, KeyError):  # corrupt files: the format's reader says why
        return None
    if "entry_1" in keys:
        return "cxi"
    if {"patterns", "indexes"} <= keys:
        return "ptychodus-diffraction"
    if {"probe", "object", "probe_position_x_m"} <= keys:
        return "ptychodus-product"
    return None


def _dataset(handle: h5py.File, key: str, path: Path) -> h5py.Dataset:
    return hdf5_dataset(handle, key, os.fspath(path))


def _read(handle: h5py.File, key: str, path: Path) -> np.ndarray:
    return read_hdf5_array(handle, key, os.fspath(path))


def _scan_indexes(values: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Scan indexes as int64: whole, finite and unique, else a clear error (never cast silently)."""
    values = np.asarray(values).reshape(-1)
    where = dict(source=os.fspath(path), key=key)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ScanValidationError(
                f"{int((~np.isfinite(values)).sum())} non-finite scan index(es)", **where
            )
        if not np.array_equal(values, np.round(values)):
            raise ScanValidationError("scan indexes must be whole numbers", **where)
    elif values.dtype.kind not in "biu":
        raise ScanValidationError(f"dtype {values.dtype} is not an integer scan index", **where)
    if values.size and (values.max() > 2**62 or values.min() < -(2**62)):
        raise ScanValidationError("scan indexes out of range", **where)
    values = values.astype(np.int64)
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise ScanValidationError(
            f"duplicate scan index(es) {unique[counts > 1][:5].tolist()}: patterns and positions "
            "cannot be paired",
            **where,
        )
    return values


def _attribute(item: Any, names: tuple[str, ...], path: Path, *, required: bool = True) -> float | None:
    for name in names:
        if name in item.attrs:
            try:
                value = float(item.attrs[name])
            except (TypeError, ValueError):
                raise ScanValidationError(
                    f"attribute is not a number: {item.attrs[name]!r}", source=os.fspath(path), key=name
                ) from None
            if not np.isfinite(value):
                raise ScanValidationError(
                    f"attribute is not finite: {value}", source=os.fspath(path), key=name
                )
            return value
    if required:
        raise ScanValidationError(
            f"required attribute is missing (on '{item.name}')", source=os.fspath(path), key=names[0]
        )
    return None


@dataclass(frozen=True)
class PtychodusProduct:
    """What a ptychodus ``product.h5`` holds, in SI units (arrays as stored)."""

    name: str
    energy_ev: float
    detector_distance_m: float
    probe_photon_count: float
    probe: np.ndarray
    probe_pixel_size_m: tuple[float, float]
    object: np.ndarray
    object_pixel_size_m: tuple[float, float]
    object_center_m: tuple[float, float]  # (x, y)
    position_indexes: np.ndarray
    positions_x_m: np.ndarray
    positions_y_m: np.ndarray
    losses: np.ndarray


def read_ptychodus_product(path: str | os.PathLike, *, links_within_folder: bool = False) -> PtychodusProduct:
    """Read a ptychodus ``product.h5`` (see the module docstring).

    Links to other files are refused unless ``links_within_folder`` (:mod:`.safety`).
    """
    path = Path(path)
    handle = open_hdf5(path, links_within_folder=links_within_folder)
    with handle:
        name = handle.attrs.get("name", path.parent.name)
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        energy = _attribute(handle, ("photon_energy_eV", "probe_energy_eV"), path)
        distance = _attribute(handle, ("detector_object_distance_m",), path)
        photons = _attribute(handle, ("probe_photon_count",), path, required=False) or 0.0
        probe_item = _dataset(handle, "probe", path)
        object_item = _dataset(handle, "object", path)
        object_pixel = (
            _attribute(object_item, ("pixel_width_m",), path),
            _attribute(object_item, ("pixel_height_m",), path),
        )
        probe_pixel = (
            _attribute(probe_item, ("pixel_width_m",), path, required=False) or object_pixel[0],
            _attribute(probe_item, ("pixel_height_m",), path, required=False) or object_pixel[1],
        )
        center = (
            _attribute(object_item, ("center_x_m",), path),
            _attribute(object_item, ("center_y_m",), path),
        )
        indexes = _scan_indexes(_read(handle, "probe_position_indexes", path), "probe_position_indexes", path)
        xs = _read(handle, "probe_position_x_m", path)
        ys = _read(handle, "probe_position_y_m", path)
        losses = _read(handle, "loss_values", path) if "loss_values" in handle else np.zeros(0)
        probe, obj = _read(handle, "probe", path), _read(handle, "object", path)
    for key, values in (("probe_position_x_m", xs), ("probe_position_y_m", ys), ("loss_values", losses)):
        if values.dtype.kind not in "biuf":
            raise ScanValidationError(
                f"dtype {values.dtype} is not real numeric", source=os.fspath(path), key=key
            )
    for key, values in (("probe_position_x_m", xs), ("probe_position_y_m", ys)):
        if not np.isfinite(values).all():
            raise ScanValidationError("non-finite position(s)", source=os.fspath(path), key=key)
    for key, values in (("probe", probe), ("object", obj)):
        if values.dtype.kind not in "biufc":
            raise ScanValidationError(f"dtype {values.dtype} is not numeric", source=os.fspath(path), key=key)
    if not (indexes.ndim == xs.ndim == ys.ndim == 1 and indexes.shape == xs.shape == ys.shape):
        raise ScanValidationError(
            f"position datasets disagree: indexes {indexes.shape}, x {xs.shape}, y {ys.shape}",
            source=os.fspath(path),
            key="probe_position_x_m",
        )
    return PtychodusProduct(
        name=name,
        energy_ev=energy,
        detector_distance_m=distance,
        probe_photon_count=photons,
        probe=np.asarray(probe),
        probe_pixel_size_m=probe_pixel,
        object=np.asarray(obj),
        object_pixel_size_m=object_pixel,
        object_center_m=center,
        position_indexes=indexes,
        positions_x_m=np.asarray(xs, dtype=np.float64),
        positions_y_m=np.asarray(ys, dtype=np.float64),
        losses=np.asarray(losses, dtype=np.float64).reshape(-1),
    )


def _probe_modes(probe: np.ndarray, path: Path) -> np.ndarray:
    """``(modes, H, W)`` from ptychodus' ``(H, W)``, ``(modes, H, W)`` or ``(opr, modes, H, W)``."""
    if probe.ndim == 4:
        if probe.shape[0] > 1:
            log.info(
                "%s: probe has %d OPR modes; using the first (position-independent) one", path, probe.shape[0]
            )
        probe = probe[0]
    if probe.ndim == 2:
        probe = probe[None]
    if probe.ndim != 3:
        raise ScanValidationError(
            f"shape {probe.shape} is not (H, W), (modes, H, W) or (opr, modes, H, W)",
            source=os.fspath(path),
            key="probe",
        )
    return probe


def read_ptychodus(path: str | os.PathLike, *, links_within_folder: bool = False) -> Scan:
    """Read ptychodus' standard layout (``diffraction.h5`` + ``product.h5``) into a :class:`Scan`.

    Parameters
    ----------
    path : str or os.PathLike
        The directory holding both files, or either file (the other lies beside it).

    Returns
    -------
    Scan
        Counts read lazily from ``diffraction.h5`` (bad pixels zeroed and masked out),
        positions ``(y, x)`` in object pixels of the product's object grid, the probe mode
        stack, SI metadata including the metre frame (``origin_x_m``, ``origin_y_m``).
        Patterns and positions are paired by scan index; patterns without a position (and
        positions without a pattern) are left out, with a log message.
    """
    pair = ptychodus_pair(path)
    if pair is None:
        raise ScanFileError(
            f"not ptychodus' layout: expected a directory (or a file beside its partner) holding "
            f"{DIFFRACTION_FILE} and {PRODUCT_FILE}",
            source=os.fspath(path),
        )
    diffraction_path, product_path = pair
    product = read_ptychodus_product(product_path, links_within_folder=links_within_folder)
    source = os.fspath(diffraction_path)
    handle = open_hdf5(diffraction_path, links_within_folder=links_within_folder)
    with handle:
        indexes = _scan_indexes(_read(handle, "indexes", diffraction_path), "indexes", diffraction_path)
        patterns = _dataset(handle, "patterns", diffraction_path)
        pixel = (
            _attribute(patterns, ("detector_pixel_width_m",), diffraction_path),
            _attribute(patterns, ("detector_pixel_height_m",), diffraction_path),
        )
        bad = _read(handle, "bad_pixels", diffraction_path) if "bad_pixels" in handle else None
        n_stored = patterns.shape[0] if patterns.ndim == 3 else -1
        pattern_shape = patterns.shape[1:]
    if n_stored != indexes.shape[0]:
        raise ScanValidationError(
            f"{indexes.shape[0]} indexes for {n_stored} patterns", source=source, key="indexes"
        )
    # pair patterns and positions by scan index (ptychodus' rule: indexes are authoritative)
    row_of_index = {int(i): row for row, i in enumerate(indexes)}
    rows, keep = [], []
    for k, index in enumerate(product.position_indexes):
        row = row_of_index.get(int(index))
        if row is not None:
            rows.append(row)
            keep.append(k)
    if not rows:
        raise ScanValidationError(
            "no scan index is shared by the patterns and the product's positions",
            source=os.fspath(product_path),
            key="probe_position_indexes",
        )
    dropped = (len(indexes) - len(rows), len(product.position_indexes) - len(keep))
    if any(dropped):
        log.info(
            "%s: %d pattern(s) without a position and %d position(s) without a pattern left out",
            path,
            *dropped,
        )
    rows_array = np.asarray(rows, dtype=np.int64)
    if bad is not None and bad.dtype.kind not in "biu":
        raise ScanValidationError(f"dtype {bad.dtype} is not a boolean mask", source=source, key="bad_pixels")
    if bad is not None and tuple(bad.shape) != tuple(pattern_shape):
        raise ScanValidationError(
            f"bad-pixel mask {bad.shape} does not match patterns {tuple(pattern_shape)}",
            source=source,
            key="bad_pixels",
        )
    bad_pixels = None if bad is None or not np.any(bad) else np.asarray(bad, dtype=bool)
    counts = HDF5Patterns(
        diffraction_path,
        "patterns",
        rows=None if np.array_equal(rows_array, np.arange(len(indexes))) else rows_array,
        bad_pixels=bad_pixels,
        links_within_folder=links_within_folder,
    )
    size = counts.shape[-1]

    dx, dy = product.object_pixel_size_m
    if not np.isclose(dx, dy, rtol=1e-6):
        raise ScanValidationError(
            f"non-square object pixels ({dx} x {dy} m) are not supported",
            source=os.fspath(product_path),
            key="object",
        )
    if not np.allclose(product.probe_pixel_size_m, product.object_pixel_size_m, rtol=1e-6):
        raise ScanValidationError(
            f"probe pixels {product.probe_pixel_size_m} m differ from object pixels "
            f"{product.object_pixel_size_m} m; resample the probe in ptychodus first",
            source=os.fspath(product_path),
            key="probe",
        )
    height, width = product.object.shape[-2:]
    center_x, center_y = product.object_center_m
    # metres of object pixel (0, 0): the centre sits at pixel ((W - 1) / 2, (H - 1) / 2)
    origin_x = center_x - dx * (width - 1) / 2
    origin_y = center_y - dx * (height - 1) / 2
    xs = (product.positions_x_m[keep] - origin_x) / dx
    ys = (product.positions_y_m[keep] - origin_y) / dx
    # our grids start at pixel 0: a scan reaching past the product's object edge is shifted in
    shift_y = max(0.0, size / 2 - float(ys.min()))
    shift_x = max(0.0, size / 2 - float(xs.min()))
    if shift_x or shift_y:
        log.info(
            "%s: positions reach past the product's object; shifted by (%g, %g) px", path, shift_y, shift_x
        )
        ys, xs = ys + shift_y, xs + shift_x
        origin_x, origin_y = origin_x - shift_x * dx, origin_y - shift_y * dx

    metadata = ScanMetadata(
        energy_ev=product.energy_ev,
        detector_distance_m=product.detector_distance_m,
        detector_pixel_size_m=float(np.sqrt(pixel[0] * pixel[1])),
        object_pixel_size_m=dx,
        photons_per_pattern=product.probe_photon_count or None,
        origin_x_m=origin_x,
        origin_y_m=origin_y,
    )
    return Scan(
        diffraction=counts,
        positions=np.stack([ys, xs], axis=1),
        probe=_probe_modes(product.probe, product_path).astype(np.complex64),
        mask=None if counts.bad_pixels is None else ~counts.bad_pixels,
        scan_index=product.position_indexes[keep],
        metadata=metadata,
        source=os.fspath(Path(path)),
    )


def write_ptychodus_product(
    path: str | os.PathLike,
    *,
    object: np.ndarray,
    probe: np.ndarray,
    positions: np.ndarray,
    pixel_size_m: float,
    origin_m: tuple[float, float] = (0.0, 0.0),
    position_indexes: np.ndarray | None = None,
    energy_ev: float,
    detector_distance_m: float,
    probe_photon_count: float = 0.0,
    losses: np.ndarray | list[float] | None = None,
    name: str = "ptychopinn",
    comments: str = "",
) -> None:
    """Write a ptychodus ``product.h5`` (atomically) that ptychodus' ``load_product`` opens.

    Parameters
    ----------
    path : path
        Output file.
    object : numpy.ndarray
        Complex ``(H, W)`` object on our grid.
    probe : numpy.ndarray
        Complex ``(N, N)`` or ``(modes, N, N)``; written as ``(1, modes, N, N)`` (no OPR).
    positions : numpy.ndarray
        ``(n, 2)`` ``(y, x)`` positions in pixels of ``object``'s grid.
    pixel_size_m : float
        Object (and probe) pixel size (m).
    origin_m : (float, float)
        ``(y, x)`` metres of object pixel (0, 0) (``ScanMetadata.origin_y_m`` / ``origin_x_m``
        of a scan read from ptychodus, so the positions keep their metres).
    position_indexes : numpy.ndarray, optional
        Scan indexes (default ``0 .. n-1``).
    energy_ev, detector_distance_m : float
        Photon energy (eV) and detector distance (m); ptychodus requires both.
    probe_photon_count : float
        Mean photons per pattern.
    losses : sequence of float, optional
        Loss per epoch (``loss_epochs`` = 0, 1, ...).
    name, comments : str
    """
    obj = np.asarray(object)
    if obj.ndim != 2:
        raise ValueError(f"object must be (H, W), got shape {obj.shape}")
    modes = np.asarray(probe)
    modes = modes[None] if modes.ndim == 2 else modes
    if modes.ndim != 3:
        raise ValueError(f"probe must be (N, N) or (modes, N, N), got shape {modes.shape}")
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must be (n, 2), got shape {positions.shape}")
    if not (np.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise ValueError(f"pixel_size_m must be positive, got {pixel_size_m!r}")
    for label, value in (("energy_ev", energy_ev), ("detector_distance_m", detector_distance_m)):
        if value is None or not (np.isfinite(value) and value > 0):
            raise ValueError(f"{label} must be a positive number (ptychodus requires it), got {value!r}")
    indexes = (
        np.arange(len(positions), dtype=np.int64)
        if position_indexes is None
        else np.asarray(position_indexes)
    )
    height, width = obj.shape
    origin_y, origin_x = origin_m
    loss_values = np.asarray([] if losses is None else losses, dtype=np.float64)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["name"] = name
        handle.attrs["comments"] = comments
        handle.attrs["detector_object_distance_m"] = float(detector_distance_m)
        handle.attrs["photon_energy_eV"] = float(energy_ev)
        handle.attrs["probe_energy_eV"] = float(energy_ev)  # the older name, for older readers
        handle.attrs["probe_photon_count"] = float(probe_photon_count)
        handle.attrs["exposure_time_s"] = 0.0
        handle.attrs["mass_attenuation_m2_per_kg"] = 0.0
        handle.attrs["tomography_angle_deg"] = 0.0
        handle.create_dataset("probe_position_indexes", data=indexes)
        handle.create_dataset("probe_position_x_m", data=origin_x + pixel_size_m * positions[:, 1])
        handle.create_dataset("probe_position_y_m", data=origin_y + pixel_size_m * positions[:, 0])
        probe_item = handle.create_dataset("probe", data=modes[None].astype(np.complex64))
        probe_item.attrs["pixel_width_m"] = pixel_size_m
        probe_item.attrs["pixel_height_m"] = pixel_size_m
        object_item = handle.create_dataset("object", data=obj[None].astype(np.complex64))
        object_item.attrs["center_x_m"] = origin_x + pixel_size_m * (width - 1) / 2
        object_item.attrs["center_y_m"] = origin_y + pixel_size_m * (height - 1) / 2
        object_item.attrs["pixel_width_m"] = pixel_size_m
        object_item.attrs["pixel_height_m"] = pixel_size_m
        handle.create_dataset("object_layer_spacing_m", data=np.zeros(0))
        handle.create_dataset("loss_epochs", data=np.arange(len(loss_values), dtype=np.int64))
        handle.create_dataset("loss_values", data=loss_values)


def ptychodus_contents(path: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Both files' datasets, each name prefixed with its file."""
    pair = ptychodus_pair(path)
    if pair is None:
        raise ValueError("not ptychodus' layout")
    entries = []
    for file in pair:
        entries += [(f"{file.name}:{name}", shape, dtype) for name, shape, dtype in hdf5_contents(str(file))]
    return entries


def _is_ptychodus(path: str, head: bytes) -> bool:
    """A directory holding both files, or one of them with its partner beside it."""
    if os.path.isdir(path):
        return ptychodus_pair(path) is not None
    if head != HDF5_SIGNATURE:
        return False
    kind = hdf5_kind(path)
    if kind is None or not kind.startswith("ptychodus"):
        return False
    if ptychodus_pair(path) is None:
        partner = PRODUCT_FILE if kind == "ptychodus-diffraction" else DIFFRACTION_FILE
        raise ScanFileError(f"a ptychodus {kind[10:]} file without its {partner} beside it", source=path)
    return True


register_format(
    ScanFormat(
        name="ptychodus",
        description="ptychodus' layout: diffraction.h5 and product.h5 (a directory, or either file)",
        detect=_is_ptychodus,
        read=read_ptychodus,
        options=("links_within_folder",),
        contents=ptychodus_contents,
        order=10,
    )
)
