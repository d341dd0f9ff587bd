"""CXI 1.6 (HDF5, SI units) read and write (docs/conventions.md, "CXI").

Layout written (and read):

- ``/cxi_version`` = 160;
- ``/entry_1/instrument_1/detector_1/data``: ``(n, N, N)`` intensities in counts, chunked by
  pattern so that slices read fast; ``/entry_1/data_1/data`` links to it;
- ``/entry_1/instrument_1/detector_1/distance``, ``x_pixel_size``, ``y_pixel_size`` (m),
  optional ``mask`` (bit 0x1 = bad pixel);
- ``/entry_1/instrument_1/source_1/energy`` in **joules**;
- ``/entry_1/instrument_1/source_1/illumination``: the probe;
- ``/entry_1/sample_1/geometry_1/translation``: ``(n, 3)`` positions (x, y, z) in metres;
- ``/entry_1/image_1/data`` with ``data_type`` = "object": the object, if known;
- ``/entry_1/ptychopinn``: our extras (exact pixel positions, scan index, metadata JSON).

Diffraction data are read lazily (:class:`~ptychopinn.io.lazy.HDF5Patterns`).
"""

from __future__ import annotations

import json
import os
import warnings

import h5py
import numpy as np

from ..units import energy_ev_to_joules, energy_joules_to_ev, object_pixel_size_m
from .atomic import atomic_path
from .errors import ScanFileError, ScanValidationError
from .lazy import HDF5Patterns
from .registry import ScanFormat, register_format
from .safety import HDF5_SIGNATURE, hdf5_contents, open_hdf5, read_hdf5_array
from .scan import Scan, ScanMetadata

CXI_VERSION = 160
DATA_KEYS = ("entry_1/instrument_1/detector_1/data", "entry_1/data_1/data")
PROBE_KEYS = ("entry_1/instrument_1/source_1/illumination", "entry_1/instrument_1/source_1/probe")
_DETECTOR = "entry_1/instrument_1/detector_1"
_SOURCE = "entry_1/instrument_1/source_1"
_TRANSLATION = "entry_1/sample_1/geometry_1/translation"
_EXTRAS = "entry_1/ptychopinn"
_BAD_PIXEL_BIT = 0x1
_WRITE_BLOCK = 1024


def _scalar(handle: h5py.File, key: str, path: str) -> float | None:
    if key not in handle:
        return None
    try:
        value = float(np.asarray(read_hdf5_array(handle, key, path)).reshape(-1)[0])
    except (TypeError, ValueError, IndexError) as exc:
        raise ScanValidationError(f"is not a number ({exc})", source=path, key=key) from None
    if not (np.isfinite(value) and value > 0):
        raise ScanValidationError(f"must be a finite positive number, got {value!r}", source=path, key=key)
    return value


def _find_image(handle: h5py.File, kind: str, path: str) -> str | None:
    entry = handle.get("entry_1")
    if not isinstance(entry, h5py.Group):
        return None
    for name in sorted(entry):
        image = entry.get(name)
        if not name.startswith("image_") or not isinstance(image, h5py.Group) or "data" not in image:
            continue
        if "data_type" in image:
            text = read_hdf5_array(handle, f"entry_1/{name}/data_type", path)
            text = text.reshape(-1)[0] if text.size else ""
            text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            if kind in text.lower():
                return f"entry_1/{name}/data"
    return None


def read_cxi(path: str | os.PathLike, *, links_within_folder: bool = False) -> Scan:
    """Read a CXI 1.6 file into a :class:`Scan`, with diffraction data read lazily.

    Positions: our own files carry exact pixel positions; for other files the translations
    (m) are divided by the object pixel size ``dx = lambda z / (N p)`` and shifted so that the
    smallest lands at ``N/2``, the first position whose patch lies inside the object grid.

    External links, external storage and virtual datasets are refused unless
    ``links_within_folder`` admits regular files in the file's own folder
    (:mod:`ptychopinn.io.safety`).

    Raises
    ------
    ScanFileError
        Missing, truncated or non-HDF5 file; an array declaring more than the file holds.
    ScanValidationError
        Missing datasets, wrong shapes, non-physical values, links to other files.
    """
    path = os.fspath(path)
    handle = open_hdf5(path, links_within_folder=links_within_folder)
    try:
        with handle:
            return _read_open_cxi(handle, path, links_within_folder)
    except (OSError, RuntimeError, KeyError) as exc:
        raise ScanFileError(f"cannot read ({exc}); is the file truncated?", source=path) from None


def _read_open_cxi(handle: h5py.File, path: str, links_within_folder: bool) -> Scan:
    if "entry_1" not in handle:
        raise ScanValidationError("no '/entry_1' group: not a CXI file", source=path, key="entry_1")
    if "cxi_version" not in handle:
        warnings.warn(f"{path}: no '/cxi_version'; reading as CXI anyway", stacklevel=3)
    data_key = next((k for k in DATA_KEYS if k in handle), None)
    if data_key is None:
        raise ScanValidationError(
            f"no diffraction data (looked for {', '.join('/' + k for k in DATA_KEYS)})", source=path
        )
    mask = None
    if f"{_DETECTOR}/mask" in handle:
        bits = read_hdf5_array(handle, f"{_DETECTOR}/mask", path)
        if bits.dtype.kind not in "biu":
            raise ScanValidationError(
                f"dtype {bits.dtype} is not integer bit flags", source=path, key=f"{_DETECTOR}/mask"
            )
        mask = (bits.astype(np.int64) & _BAD_PIXEL_BIT) == 0
    # masked pixels may hold anything (markers included): zeroed when read
    bad = None if mask is None or mask.all() else ~mask
    if bad is not None and bad.ndim != 2:
        raise ScanValidationError(f"shape {bits.shape} is not (N, N)", source=path, key=f"{_DETECTOR}/mask")
    patterns = HDF5Patterns(path, data_key, bad_pixels=bad, links_within_folder=links_within_folder)
    n, size = patterns.shape[0], patterns.shape[-1]

    energy_j = _scalar(handle, f"{_SOURCE}/energy", path)
    distance = _scalar(handle, f"{_DETECTOR}/distance", path)
    pixel_x = _scalar(handle, f"{_DETECTOR}/x_pixel_size", path)
    pixel_y = _scalar(handle, f"{_DETECTOR}/y_pixel_size", path)
    if pixel_x is not None and pixel_y is not None and not np.isclose(pixel_x, pixel_y, rtol=1e-6):
        raise ScanValidationError(
            f"non-square detector pixels ({pixel_x} m x {pixel_y} m) are not supported",
            source=path,
            key=f"{_DETECTOR}/y_pixel_size",
        )
    extras: dict = {}
    if _EXTRAS in handle and "metadata_json" in handle[_EXTRAS].attrs:
        try:
            extras = json.loads(handle[_EXTRAS].attrs["metadata_json"])
        except (TypeError, ValueError, RecursionError):
            warnings.warn(f"{path}: '/{_EXTRAS}' metadata is not JSON; ignored", stacklevel=3)
    meta_values = dict(extras.get("metadata", {}))
    meta_values.update(
        energy_ev=energy_joules_to_ev(energy_j) if energy_j else meta_values.get("energy_ev"),
        detector_distance_m=distance or meta_values.get("detector_distance_m"),
        detector_pixel_size_m=pixel_x or meta_values.get("detector_pixel_size_m"),
    )
    metadata = ScanMetadata.from_dict(meta_values, source=path)

    probe_key = next((k for k in PROBE_KEYS if k in handle), None) or _find_image(handle, "probe", path)
    if probe_key is None:
        raise ScanValidationError(
            f"no probe (looked for {', '.join('/' + k for k in PROBE_KEYS)} and an image_N "
            "with data_type 'probe')",
            source=path,
        )
    probe = read_hdf5_array(handle, probe_key, path)

    if f"{_EXTRAS}/positions_px" in handle:
        positions = read_hdf5_array(handle, f"{_EXTRAS}/positions_px", path)
    elif _TRANSLATION in handle:
        translation = read_hdf5_array(handle, _TRANSLATION, path)
        if translation.dtype.kind not in "biuf":
            raise ScanValidationError(
                f"dtype {translation.dtype} is not real numeric", source=path, key=_TRANSLATION
            )
        if translation.ndim != 2 or translation.shape[1] not in (2, 3):
            raise ScanValidationError(
                f"shape {translation.shape} is not (n, 3)", source=path, key=_TRANSLATION
            )
        dx = metadata.object_pixel_size_m
        if dx is None:
            missing = [
                key
                for key, value in (
                    (f"/{_SOURCE}/energy", energy_j),
                    (f"/{_DETECTOR}/distance", distance),
                    (f"/{_DETECTOR}/x_pixel_size", pixel_x),
                )
                if value is None
            ]
            if missing:
                raise ScanValidationError(
                    f"positions are in metres but {', '.join(missing)} missing, so the object "
                    "pixel size cannot be computed",
                    source=path,
                    key=_TRANSLATION,
                )
            dx = object_pixel_size_m(metadata.wavelength_m, distance, size, pixel_x)
        if not np.isfinite(translation).all():
            raise ScanValidationError("non-finite translation(s)", source=path, key=_TRANSLATION)
        positions = np.stack([translation[:, 1], translation[:, 0]], axis=1) / dx
        positions = positions - positions.min(axis=0) + size // 2
        if len(positions) > 1 and np.ptp(positions, axis=0).max() < 1.0:
            raise ScanValidationError(
                f"all {len(positions)} positions lie within one object pixel ({dx:.3g} m) of each other: "
                "translations in the wrong unit? CXI stores metres",
                source=path,
                key=_TRANSLATION,
            )
    else:
        raise ScanValidationError("no scan positions", source=path, key=_TRANSLATION)

    if patterns.bad_pixels is not None:  # the mask's pixels, and detector markers found in the data
        mask = ~patterns.bad_pixels
    object_key = _find_image(handle, "object", path)
    obj = read_hdf5_array(handle, object_key, path) if object_key else None
    scan_index = (
        read_hdf5_array(handle, f"{_EXTRAS}/scan_index", path) if f"{_EXTRAS}/scan_index" in handle else None
    )
    patches = read_hdf5_array(handle, f"{_EXTRAS}/patches", path) if f"{_EXTRAS}/patches" in handle else None
    if positions.shape[0] != n:
        raise ScanValidationError(
            f"{positions.shape[0]} positions for {n} patterns", source=path, key=_TRANSLATION
        )
    return Scan(
        diffraction=patterns,
        positions=positions,
        probe=probe,
        object=obj,
        mask=mask,
        scan_index=scan_index,
        patches=patches,
        metadata=metadata,
        source=path,
    )


def write_cxi(scan: Scan, path: str | os.PathLike, *, compression: str | None = None) -> None:
    """Write a :class:`Scan` as CXI 1.6 in SI units (atomically).

    The scan needs its geometry (``energy_ev``, ``detector_distance_m``,
    ``detector_pixel_size_m``) since CXI stores positions in metres. Lazily read diffraction
    data are copied block by block, never loaded whole.

    Parameters
    ----------
    scan : Scan
    path : str or os.PathLike
    compression : str, optional
        HDF5 compression filter for the diffraction data (e.g. ``"gzip"``).
    """
    meta = scan.metadata
    missing = [
        name
        for name in ("energy_ev", "detector_distance_m", "detector_pixel_size_m")
        if getattr(meta, name) is None
    ]
    if missing:
        raise ScanValidationError(
            f"CXI stores SI units, but the scan's metadata lacks {', '.join(missing)}",
            source=scan.source,
        )
    dx = scan.pixel_size_m()
    n, size = scan.n_patterns, scan.pattern_size
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        out["cxi_version"] = CXI_VERSION
        detector = out.create_group(_DETECTOR)
        data = detector.create_dataset(
            "data",
            shape=(n, size, size),
            dtype=np.float32,
            chunks=(min(n, max(1, 2**20 // (4 * size * size))), size, size),
            compression=compression,
        )
        for start, block in scan.iter_batches(_WRITE_BLOCK):
            data[start : start + len(block)] = block
        detector["distance"] = meta.detector_distance_m
        detector["x_pixel_size"] = meta.detector_pixel_size_m
        detector["y_pixel_size"] = meta.detector_pixel_size_m
        if scan.mask is not None:
            detector["mask"] = np.where(scan.mask, 0, _BAD_PIXEL_BIT).astype(np.uint32)
        out.create_group("entry_1/data_1")["data"] = h5py.SoftLink(f"/{_DETECTOR}/data")
        source = out.create_group(_SOURCE)
        source["energy"] = energy_ev_to_joules(meta.energy_ev)
        source["illumination"] = scan.probe
        translation = np.zeros((n, 3))
        translation[:, 0] = scan.positions[:, 1] * dx
        translation[:, 1] = scan.positions[:, 0] * dx
        out.create_group("entry_1/sample_1/geometry_1")["translation"] = translation
        if scan.object is not None:
            image = out.create_group("entry_1/image_1")
            image["data"] = scan.object
            image["data_type"] = "object"
            image["x_pixel_size"] = dx
            image["y_pixel_size"] = dx
        extras = out.create_group(_EXTRAS)
        extras["positions_px"] = scan.positions
        if scan.scan_index is not None:
            extras["scan_index"] = scan.scan_index
        if scan.patches is not None:
            extras["patches"] = scan.patches
        extras.attrs["metadata_json"] = json.dumps({"version": 1, "metadata": meta.to_dict()})


register_format(
    ScanFormat(
        name="cxi",
        description="CXI 1.6 / HDF5: any HDF5 file not in ptychodus' layout",
        detect=lambda path, head: head == HDF5_SIGNATURE,
        read=read_cxi,
        options=("links_within_folder",),
        contents=hdf5_contents,
        write=lambda scan, path: write_cxi(scan, path),
        suffixes=(".cxi", ".h5", ".hdf5"),
        order=30,
    )
)
