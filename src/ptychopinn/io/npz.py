"""The PtychoPINN NPZ contract (docs/conventions.md, "NPZ reading"), read and written safely.

Files hold diffraction **amplitudes** (``diffraction``, or legacy ``diff3d``), possibly in the
legacy ``(N, N, n)`` layout, plus ``probeGuess``, optional ``objectGuess``, ``xcoords`` /
``ycoords`` (object pixels), ``scan_index``, ``Y`` and a ``_metadata`` JSON string.

Safety: nothing is read with ``allow_pickle=True``. ``_metadata`` (a pickled 0-d object array
in files written by numpy) goes through a restricted unpickler that admits the three numpy
names needed to rebuild an array and a plain string, and nothing else.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import warnings
import zipfile
from importlib import import_module
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import ScanFileError, ScanValidationError
from .npz_values import (
    eager_counts,
    mapped_member,
    photons_from_metadata,
    read_mapped_counts,
    squeeze_trailing,
)
from .registry import ScanFormat, register_format
from .safety import check_npy_header, check_zip_members, read_npy_header, require_regular_file
from .scan import Scan, ScanMetadata

log = logging.getLogger("ptychopinn.io")

DIFFRACTION_KEYS = ("diffraction", "diff3d")
_METADATA_KEY = "_metadata"
_MAX_METADATA_BYTES = 16 * 1024 * 1024
#: Diffraction members larger than this are memory-mapped (when stored uncompressed).
LAZY_THRESHOLD_BYTES = 512 * 1024 * 1024
#: Patterns sampled to tell whole counts from normalised amplitudes in a mapped member.
_DETECTION_PATTERNS = 64


def _numpy_global(module: str, name: str) -> Any:
    # numpy 2 renamed numpy.core to numpy._core; files from either may name either.
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
        for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
            try:
                return getattr(import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module in ("numpy.dtypes",) and name == "ObjectDType":
        return np.dtypes.ObjectDType
    raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}' from _metadata")


class _StringArrayUnpickler(pickle.Unpickler):
    """Rebuilds a numpy object array of plain strings; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        return _numpy_global(module, name)


def _read_metadata_json(path: str, archive: zipfile.ZipFile) -> dict[str, Any] | None:
    """Parse ``_metadata`` without running code from the file; None (with a warning) if unusable."""
    member = f"{_METADATA_KEY}.npy"
    if member not in archive.namelist():
        return None
    try:
        info = archive.getinfo(member)
        if info.file_size > _MAX_METADATA_BYTES:
            raise ValueError(f"{info.file_size} bytes is too large for metadata")
        with archive.open(member) as handle:
            raw = handle.read()
        stream = io.BytesIO(raw)
        shape, dtype = read_npy_header(stream)
        if dtype.hasobject:
            value = _StringArrayUnpickler(stream).load()
        else:
            value = np.frombuffer(stream.read(), dtype=dtype).reshape(shape)
        value = np.asarray(value)
        text = value.reshape(-1)[0] if value.size == 1 else None
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(f"expected one JSON string, found {type(text).__name__}")
        parsed = json.loads(text)
        if not isinstance(parsed, dict):
            raise ValueError("the JSON is not an object")
        return parsed
    except (
        pickle.UnpicklingError,
        ValueError,
        EOFError,
        OSError,
        zipfile.BadZipFile,
        NotImplementedError,
        RuntimeError,
        MemoryError,
        RecursionError,
        TypeError,
        AttributeError,
    ) as exc:
        warnings.warn(f"{path}: '{_METADATA_KEY}' skipped: {exc or type(exc).__name__}", stacklevel=3)
        return None


def _check_declared_sizes(path: str, archive: zipfile.ZipFile) -> None:
    """Refuse members whose header claims more data than the archive holds.

    A corrupt or hostile header (say, 10^12 patterns) must fail here with a message, not
    as a giant allocation inside numpy.
    """
    check_zip_members(archive, path)
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ScanFileError(
                "is not a .npy array; an NPZ archive holds only .npy members", source=path, key=info.filename
            )
        key = info.filename[:-4]
        try:
            with archive.open(info) as handle:
                check_npy_header(handle, info.file_size, source=path, key=key, load_whole=False)
        except ScanFileError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
            raise ScanFileError(f"unreadable array header ({exc})", source=path, key=key) from None


def _load_key(archive: Any, key: str, path: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        raise ScanValidationError(f"cannot be read without pickle ({exc})", source=path, key=key) from None
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise ScanFileError(
            f"cannot read this key ({exc}); is the file truncated?", source=path, key=key
        ) from None


def read_npz(
    path: str | os.PathLike,
    *,
    photons_per_pattern: float | None = None,
    lazy: bool | None = None,
    pattern_axis: str | None = None,
) -> Scan:
    """Read a PtychoPINN NPZ file into a :class:`Scan`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    photons_per_pattern : float, optional
        Mean photons per pattern for files holding *normalised* amplitudes, overriding the
        file's ``_metadata`` ``physics_parameters.nphotons``. Not needed for raw amplitudes
        (whose squares are whole counts).
    lazy : bool, optional
        Memory-map the diffraction data instead of loading them: patterns are read when
        asked for (``Scan.get_patterns``), so scans larger than memory can be trained on
        and inferred. Needs the member stored uncompressed (``np.savez``, as we write; not
        ``np.savez_compressed``), else the data are loaded with a warning. Default: map
        members larger than :data:`LAZY_THRESHOLD_BYTES` (512 MiB) when possible.
    pattern_axis : {"first", "last"}, optional
        Where the patterns are in the diffraction array: ``(n, N, N)`` or the legacy
        ``(N, N, n)``. Default: from the shape; a cube (n == N) counts as ``(n, N, N)`` when the
        file comes from a current writer (``_metadata``, or both ``diffraction`` and
        ``diff3d``) and is refused otherwise, naming this option.

    Returns
    -------
    Scan
        Intensities in counts, positions ``(y, x)`` in object pixels.

    Raises
    ------
    ScanFileError
        The file is missing, not a zip archive, or truncated.
    ScanValidationError
        A key is missing or holds the wrong shape, dtype or values.
    """
    path = require_regular_file(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise ScanFileError(f"not a readable NPZ archive ({exc})", source=path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ScanFileError("holds a single .npy array, not an NPZ archive of named keys", source=path)
    with archive:
        _check_declared_sizes(path, archive.zip)
        keys = set(archive.files)
        meta_json = _read_metadata_json(path, archive.zip)

        diff_key, x_key, y_key, pattern_axis = _resolve_keys(path, keys, meta_json, pattern_axis)
        xs, ys = _read_coordinates(archive, path, x_key, y_key)
        n = xs.shape[0]
        bad_pixels = _read_bad_pixels(archive, path) if "bad_pixels" in keys else None
        declared_photons = (
            photons_per_pattern if photons_per_pattern is not None else photons_from_metadata(meta_json)
        )
        counts, bad_pixels = _read_counts(
            archive, path, diff_key, n, declared_photons, bad_pixels, pattern_axis, lazy
        )  # fmt: skip

        probe = squeeze_trailing(np.asarray(_load_key(archive, "probeGuess", path)), 2)
        obj = None
        if "objectGuess" in keys and "bad_pixels" in keys:
            # ptychodus exports its current object estimate, not a ground truth to compare with
            log.info("%s: 'objectGuess' is ptychodus' estimate, not a ground truth; not loaded", path)
        elif "objectGuess" in keys:
            obj = squeeze_trailing(np.asarray(_load_key(archive, "objectGuess", path)), 2)
        scan_index = (
            squeeze_trailing(np.asarray(_load_key(archive, "scan_index", path)), 1)
            if "scan_index" in keys
            else None
        )
        patches = None
        if "Y" in keys:
            y_patches = squeeze_trailing(np.asarray(_load_key(archive, "Y", path)), 3)
            if y_patches.ndim == 3:
                patches = y_patches
            else:
                warnings.warn(
                    f"{path}: 'Y' of shape {y_patches.shape} holds grouped patches; not loaded",
                    stacklevel=2,
                )
        mask = np.asarray(_load_key(archive, "detector_mask", path)) if "detector_mask" in keys else None
        if bad_pixels is not None:
            mask = ~bad_pixels if mask is None else np.logical_and(mask.astype(bool), ~bad_pixels)

    ours = (meta_json or {}).get("ptychopinn", {}) if isinstance(meta_json, dict) else {}
    meta_values = dict(ours.get("metadata", {})) if isinstance(ours, dict) else {}
    if meta_values.get("photons_per_pattern") is None:
        meta_values["photons_per_pattern"] = declared_photons  # worked out once, above
    metadata = ScanMetadata.from_dict(meta_values, source=path)
    positions = np.stack([ys, xs], axis=1).astype(np.float64)
    size = counts.shape[-1]
    if obj is None and n and np.isfinite(positions).all():
        # positions relative to the object's centre (negative ones): every patch must lie on the
        # object grid, else it is dropped when stitched; shift as ptychodus' reader does
        shift = np.maximum(0.0, size / 2 - positions.min(axis=0))
        if shift.any():
            log.info("%s: positions reach below N/2 = %d (centred coordinates?); shifted by (%g, %g) px "
                     "so that every patch lies on the object grid", path, size // 2, *shift)  # fmt: skip
            positions = positions + shift
    return Scan(
        diffraction=counts,
        positions=positions,
        probe=probe,
        object=obj,
        mask=mask,
        scan_index=scan_index,
        patches=patches,
        metadata=metadata,
        source=path,
    )


def _resolve_keys(
    path: str, keys: set[str], meta_json: dict | None, pattern_axis: str | None
) -> tuple[str, str, str, str | None]:
    """The diffraction and coordinate keys of a file, and its pattern axis (when it is known).

    Raises
    ------
    ScanValidationError
        No diffraction data, or a required key is missing (the message lists the file's keys).
    """
    if pattern_axis not in (None, "first", "last"):
        raise ValueError(f"pattern_axis = {pattern_axis!r}: must be 'first' or 'last'")
    if pattern_axis is None and (meta_json is not None or set(DIFFRACTION_KEYS) <= keys):
        pattern_axis = "first"  # current writers store (n, N, N)
    diff_key = next((k for k in DIFFRACTION_KEYS if k in keys), None)
    if diff_key is None:
        raise ScanValidationError(
            f"no diffraction data: expected key 'diffraction' or 'diff3d' (found: {sorted(keys)})",
            source=path,
        )
    x_key, y_key = "xcoords", "ycoords"
    if x_key not in keys and "xcoords_start" in keys:
        x_key, y_key = "xcoords_start", "ycoords_start"
    for key in (x_key, y_key, "probeGuess"):
        if key not in keys:
            found = sorted(keys)
            raise ScanValidationError(f"required key is missing (found: {found})", source=path, key=key)
    return diff_key, x_key, y_key, pattern_axis


def _read_coordinates(archive: Any, path: str, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``(n,)`` x and y coordinates (object pixels), checked for shape and kind."""
    xs = np.asarray(_load_key(archive, x_key, path))
    ys = np.asarray(_load_key(archive, y_key, path))
    for key, coords in ((x_key, xs), (y_key, ys)):
        coords = squeeze_trailing(coords, 1)
        if coords.ndim != 1:
            raise ScanValidationError(f"shape {coords.shape} is not (n,)", source=path, key=key)
    xs, ys = squeeze_trailing(xs, 1), squeeze_trailing(ys, 1)
    if xs.shape != ys.shape:
        raise ScanValidationError(f"shape {xs.shape} differs from {y_key} {ys.shape}", source=path, key=x_key)
    for key, coords in ((x_key, xs), (y_key, ys)):
        if coords.dtype.kind not in "biuf":
            raise ScanValidationError(f"dtype {coords.dtype} is not real numeric", source=path, key=key)
    return xs, ys


def _read_bad_pixels(archive: Any, path: str) -> np.ndarray | None:
    """ptychodus' export: True where a pixel was filled in, not measured (None: none are)."""
    bad_pixels = np.asarray(_load_key(archive, "bad_pixels", path))
    if bad_pixels.dtype.kind not in "biu" or bad_pixels.ndim != 2:
        raise ScanValidationError(
            f"dtype {bad_pixels.dtype}, shape {bad_pixels.shape}: expected a boolean (N, N) mask",
            source=path, key="bad_pixels",
        )  # fmt: skip
    bad_pixels = bad_pixels.astype(bool)
    return bad_pixels if bad_pixels.any() else None


def _read_counts(
    archive: Any,
    path: str,
    diff_key: str,
    n: int,
    declared_photons: float | None,
    bad_pixels: np.ndarray | None,
    pattern_axis: str | None,
    lazy: bool | None,
) -> tuple[Any, np.ndarray | None]:
    """The counts of ``diff_key``, memory-mapped (large or ``lazy``, when stored so) or loaded.

    Returns the counts (an array or a :class:`~ptychopinn.io.lazy.MappedPatterns`) and the bad
    pixels found, markers included.
    """
    member = None
    if lazy or lazy is None:
        info = archive.zip.getinfo(f"{diff_key}.npy")
        if lazy or info.file_size > LAZY_THRESHOLD_BYTES:
            member = mapped_member(path, archive.zip, diff_key)
            if member is None and lazy:
                warnings.warn(
                    f"{path}: '{diff_key}' is compressed or not C-ordered and cannot be memory-mapped; "
                    "loading it whole",
                    stacklevel=3,
                )
    if member is not None:
        counts = read_mapped_counts(path, diff_key, member, n, declared_photons, bad_pixels, pattern_axis)
        return counts, counts.bad_pixels
    stored = _load_key(archive, diff_key, path)
    return eager_counts(path, diff_key, stored, n, declared_photons, bad_pixels, pattern_axis)


def write_npz(scan: Scan, path: str | os.PathLike, *, batch_size: int = 1024) -> None:
    """Write a :class:`Scan` as a PtychoPINN NPZ file (atomically).

    Produces ``diffraction`` and ``diff3d`` (float32 amplitudes, ``(n, N, N)``),
    ``probeGuess``, ``objectGuess`` when known, ``xcoords``, ``ycoords``, ``scan_index``,
    ``Y`` when ground-truth patches are known, ``detector_mask`` when a mask is set, and
    ``_metadata`` (JSON with ``physics_parameters.nphotons`` and our own metadata), so that
    the file loads in the PtychoPINN tools and round-trips here.

    The diffraction data are written ``batch_size`` patterns at a time, uncompressed, so a
    lazily read (or simulated) scan streams to disk in bounded memory and the file can be
    memory-mapped when read (:func:`read_npz`).
    """
    arrays: dict[str, np.ndarray] = {
        "probeGuess": scan.probe if scan.probe.ndim == 2 else scan.probe_modes,
        "xcoords": scan.positions[:, 1].copy(),
        "ycoords": scan.positions[:, 0].copy(),
        "scan_index": scan.scan_index if scan.scan_index is not None else np.zeros(scan.n_patterns, np.int64),
    }
    if scan.object is not None:
        arrays["objectGuess"] = scan.object
    if scan.patches is not None:
        arrays["Y"] = scan.patches
    if scan.mask is not None:
        arrays["detector_mask"] = scan.mask
    shape = (scan.n_patterns, scan.pattern_size, scan.pattern_size)
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": shape,
    }
    total = 0.0
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key in ("diffraction", "diff3d"):  # both names: older PtychoPINN tools read diff3d
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for _, counts in scan.iter_batches(batch_size):
                    if key == "diffraction":
                        total += float(counts.sum(dtype=np.float64))
                    member.write(np.sqrt(counts.astype(np.float64)).astype(np.float32).tobytes())
        meta = {
            "physics_parameters": {"nphotons": total / max(scan.n_patterns, 1)},
            "ptychopinn": {"format": "ptychopinn-npz", "version": 1, "metadata": scan.metadata.to_dict()},
        }
        arrays[_METADATA_KEY] = np.array(json.dumps(meta), dtype=object)
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=True)


def npz_contents(path: str) -> list[tuple[str, tuple[int, ...], str]]:
    """The archive's arrays ``(key, shape, dtype)`` from their .npy headers (no data read)."""
    entries = []
    with zipfile.ZipFile(path) as archive:
        check_zip_members(archive, path)
        for name in archive.namelist():
            key = name[:-4] if name.endswith(".npy") else name
            try:
                with archive.open(name) as handle:
                    shape, dtype = read_npy_header(handle)
                entries.append((key, tuple(shape), str(dtype)))
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                entries.append((key, (), f"unreadable header ({exc})"))
    return entries


register_format(
    ScanFormat(
        name="npz",
        description="PtychoPINN NPZ: a zip archive of .npy arrays (docs/conventions.md)",
        detect=lambda path, head: head.startswith((b"PK\x03\x04", b"PK\x05\x06")),
        read=read_npz,
        options=("photons_per_pattern", "lazy"),
        contents=npz_contents,
        write=lambda scan, path: write_npz(scan, path),
        suffixes=(".npz",),
        order=20,
    )
)
