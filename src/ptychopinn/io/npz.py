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
import struct
import warnings
import zipfile
import zlib
from importlib import import_module
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import ScanFileError, ScanValidationError
from .lazy import MappedPatterns, stored_to_counts
from .registry import ScanFormat, register_format
from .safety import check_npy_header, check_zip_members, read_npy_header, require_regular_file
from .scan import Scan, ScanMetadata, check_intensities, marker_pixels

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


def _squeeze_trailing(array: np.ndarray, ndim: int) -> np.ndarray:
    while array.ndim > ndim and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def _is_legacy_layout(
    shape: tuple[int, ...], n: int, pattern_axis: str | None, *, path: str, key: str
) -> bool:
    """True for the legacy ``(N, N, n)`` layout, False for ``(n, N, N)``; refuses the ambiguous.

    ``pattern_axis`` ``"first"`` or ``"last"`` says where the patterns are; None decides from
    the shape, and refuses a cube (n == N) that fits both.
    """
    if len(shape) != 3:
        raise ScanValidationError(f"shape {shape} is not (n, N, N) or legacy (N, N, n)", source=path, key=key)
    first = shape[0] == n and shape[1] == shape[2]
    last = shape[2] == n and shape[0] == shape[1]
    if pattern_axis == "first" and first or pattern_axis == "last" and last:
        return pattern_axis == "last"
    if pattern_axis is None and first != last:
        return last
    if pattern_axis is None and first and last:
        raise ScanValidationError(
            f"shape {shape} with {n} positions fits both (n, N, N) and the legacy (N, N, n): say "
            "where the patterns are with pattern_axis first or last (read_npz(..., pattern_axis=...), "
            "or 'pattern_axis:' in a scan description, docs/conventions.md)",
            source=path,
            key=key,
        )
    expected = {"first": "(n, N, N)", "last": "(N, N, n)"}.get(pattern_axis, "(n, N, N) nor (N, N, n)")
    raise ScanValidationError(
        f"shape {shape} matches {'neither ' if pattern_axis is None else 'not '}{expected} with n = {n} "
        "(the length of xcoords)",
        source=path,
        key=key,
    )


def _pattern_first(array: np.ndarray, n: int, pattern_axis: str | None, *, path: str, key: str) -> np.ndarray:
    """Return amplitudes as ``(n, N, N)``, accepting the legacy ``(N, N, n)`` layout."""
    array = _squeeze_trailing(array, 3)
    legacy = _is_legacy_layout(tuple(array.shape), n, pattern_axis, path=path, key=key)
    return np.moveaxis(array, 2, 0) if legacy else array


def _sample(values: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, flat.size // limit)
    return flat[::step]


def _whole(values: np.ndarray, tolerance: float) -> bool:
    nonzero = values[values > 0]
    if nonzero.size == 0:
        return True
    nearest = np.rint(nonzero)
    return bool(np.all(np.abs(nonzero - nearest) <= tolerance + 1e-6 * nonzero) and np.all(nearest >= 1))


def classify_diffraction_values(values: np.ndarray) -> str:
    """What a diffraction array holds, judged from its numbers (not its key's name).

    Parameters
    ----------
    values : numpy.ndarray
        The stored values (or a sample of them), bad pixels excluded.

    Returns
    -------
    str
        ``"counts"``: every value is a whole number (photon counts, as ptychodus exports
        ``diff3d``). ``"amplitudes"``: not whole numbers, but their squares are (square roots
        of counts: the PtychoPINN contract). ``"normalised"``: neither (amplitudes scaled to
        an arbitrary total: the photon count per pattern must be given).

    Notes
    -----
    Whole numbers are read as counts: amplitudes of measured counts are whole numbers only
    where every count is a perfect square, which real data never are.
    """
    sample = _sample(np.asarray(values)).astype(np.float64)
    if _whole(sample, 1e-4):
        return "counts"
    if _whole(np.square(sample), 1e-3):
        return "amplitudes"
    return "normalised"


_VALUE_NOTES = {
    "counts": "photon counts (whole numbers)",
    "amplitudes": "amplitudes (their squares are whole photon counts)",
    "normalised": "normalised amplitudes",
}


def _judge_values(path: str, key: str, values: np.ndarray) -> str:
    """:func:`classify_diffraction_values`, with a log line when it is not the contract's amplitudes."""
    kind = classify_diffraction_values(values)
    level = logging.DEBUG if kind == "amplitudes" else logging.INFO
    log.log(level, "%s: '%s' holds %s", path, key, _VALUE_NOTES[kind])
    return kind


def _normalised_scale(path: str, key: str, photons: float | None, mean_total: float) -> float:
    """Factor from squared normalised amplitudes to counts."""
    if photons is None:
        raise ScanValidationError(
            "amplitudes are normalised (neither they nor their squares are whole photon "
            "counts) and the file states no photon count: pass the mean photons per pattern "
            "with --nphotons (Python: photons_per_pattern=...)",
            source=path,
            key=key,
        )
    if not (np.isfinite(photons) and photons > 0):
        raise ScanValidationError(f"photons per pattern must be positive, got {photons!r}", source=path)
    if not mean_total > 0:
        raise ScanValidationError("all diffraction data are zero", source=path, key=key)
    return photons / mean_total


def _photons_from_metadata(meta: dict[str, Any] | None) -> float | None:
    if not meta:
        return None
    physics = meta.get("physics_parameters")
    if isinstance(physics, dict) and physics.get("nphotons") is not None:
        try:
            return float(physics["nphotons"])
        except (TypeError, ValueError):
            return None
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


def _verify_crc(handle: Any, start: int, info: zipfile.ZipInfo, path: str, key: str) -> None:
    """Check a stored member's CRC-32 in one streaming pass (what zipfile does on a full read).

    Raises
    ------
    ScanFileError
        The member's bytes do not match the CRC the archive records: the file is corrupt.
    """
    handle.seek(start)
    crc, left = 0, info.compress_size
    while left > 0:
        chunk = handle.read(min(left, 1 << 24))
        if not chunk:
            raise ScanFileError("member ends early: the file is truncated", source=path, key=key)
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    if crc != info.CRC:
        raise ScanFileError(
            f"CRC-32 mismatch ({crc:08x} read, {info.CRC:08x} recorded): the file is corrupt",
            source=path,
            key=key,
        )


def _mapped_member(
    path: str, archive: zipfile.ZipFile, key: str
) -> tuple[int, tuple[int, ...], np.dtype] | None:
    """``(data offset, shape, dtype)`` of an uncompressed, C-ordered member; else None."""
    info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return None
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            member_start = info.header_offset + 30 + name_length + extra_length
            _verify_crc(handle, member_start, info, path, key)
            handle.seek(member_start)
            version = np.lib.format.read_magic(handle)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = reader(handle)
            if fortran_order or dtype.hasobject or dtype.kind not in "biuf":
                return None
            return handle.tell(), tuple(shape), dtype
    except ScanFileError:
        raise
    except (OSError, ValueError, EOFError, struct.error):
        return None  # not mappable: the loading path reports what is wrong


def _read_mapped_counts(
    path: str,
    key: str,
    member: tuple[int, tuple[int, ...], np.dtype],
    n: int,
    photons: float | None,
    bad_pixels: np.ndarray | None,
    pattern_axis: str | None,
) -> MappedPatterns:
    """Map the member and decide, from a sample of patterns, how its values become counts."""
    offset, shape, dtype = member
    shape = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    legacy = _is_legacy_layout(shape, n, pattern_axis, path=path, key=key)
    source = MappedPatterns(path, key, offset, shape, dtype, legacy_layout=legacy, bad_pixels=bad_pixels)
    picks = np.unique(np.linspace(0, n - 1, min(n, _DETECTION_PATTERNS)).astype(np.int64))
    sample = np.array(source.stored()[picks])
    source.release()
    bad_pixels = _with_markers(path, key, sample, bad_pixels)
    source.bad_pixels = bad_pixels
    if bad_pixels is not None:
        sample = np.where(bad_pixels, 0, sample)
    for pick, pattern in zip(picks, sample, strict=True):  # report a bad pattern by its index in the scan
        check_intensities(pattern[None], source=path, key=key, first_index=int(pick))
    kind = _judge_values(path, key, sample)
    if kind == "counts":
        source.values = "counts"
    elif kind == "normalised":
        total = 0.0
        for start in range(0, n, 1024):  # one streaming pass for the mean total
            block = np.array(source.stored()[start : start + 1024])
            source.release()
            if bad_pixels is not None:
                block = np.where(bad_pixels, 0, block)
            check_intensities(block, source=path, key=key, first_index=start)
            total += float(np.square(block, dtype=np.float64).sum())
        source.counts_scale = _normalised_scale(path, key, photons, total / n)
    return source


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
                raise ScanValidationError(
                    f"required key is missing (found: {sorted(keys)})", source=path, key=key
                )

        xs = np.asarray(_load_key(archive, x_key, path))
        ys = np.asarray(_load_key(archive, y_key, path))
        for key, coords in ((x_key, xs), (y_key, ys)):
            coords = _squeeze_trailing(coords, 1)
            if coords.ndim != 1:
                raise ScanValidationError(f"shape {coords.shape} is not (n,)", source=path, key=key)
        xs, ys = _squeeze_trailing(xs, 1), _squeeze_trailing(ys, 1)
        if xs.shape != ys.shape:
            raise ScanValidationError(
                f"shape {xs.shape} differs from {y_key} {ys.shape}", source=path, key=x_key
            )
        for key, coords in ((x_key, xs), (y_key, ys)):
            if coords.dtype.kind not in "biuf":
                raise ScanValidationError(f"dtype {coords.dtype} is not real numeric", source=path, key=key)
        n = xs.shape[0]

        bad_pixels = None
        if "bad_pixels" in keys:  # ptychodus' export: True where a pixel was filled in, not measured
            bad_pixels = np.asarray(_load_key(archive, "bad_pixels", path))
            if bad_pixels.dtype.kind not in "biu" or bad_pixels.ndim != 2:
                raise ScanValidationError(
                    f"dtype {bad_pixels.dtype}, shape {bad_pixels.shape}: expected a boolean (N, N) mask",
                    source=path,
                    key="bad_pixels",
                )
            bad_pixels = bad_pixels.astype(bool)
            if not bad_pixels.any():
                bad_pixels = None
        member = None
        declared_photons = (
            photons_per_pattern if photons_per_pattern is not None else _photons_from_metadata(meta_json)
        )
        if lazy or lazy is None:
            info = archive.zip.getinfo(f"{diff_key}.npy")
            if lazy or info.file_size > LAZY_THRESHOLD_BYTES:
                member = _mapped_member(path, archive.zip, diff_key)
                if member is None and lazy:
                    warnings.warn(
                        f"{path}: '{diff_key}' is compressed or not C-ordered and cannot be "
                        "memory-mapped; loading it whole",
                        stacklevel=2,
                    )
        if member is not None:
            counts = _read_mapped_counts(
                path, diff_key, member, n, declared_photons, bad_pixels, pattern_axis
            )
            bad_pixels = counts.bad_pixels
        else:
            stored = _load_key(archive, diff_key, path)
            counts, bad_pixels = _eager_counts(
                path, diff_key, stored, n, declared_photons, bad_pixels, pattern_axis
            )

        probe = _squeeze_trailing(np.asarray(_load_key(archive, "probeGuess", path)), 2)
        obj = None
        if "objectGuess" in keys and "bad_pixels" in keys:
            # ptychodus exports its current object estimate, not a ground truth to compare with
            log.info("%s: 'objectGuess' is ptychodus' estimate, not a ground truth; not loaded", path)
        elif "objectGuess" in keys:
            obj = _squeeze_trailing(np.asarray(_load_key(archive, "objectGuess", path)), 2)
        scan_index = (
            _squeeze_trailing(np.asarray(_load_key(archive, "scan_index", path)), 1)
            if "scan_index" in keys
            else None
        )
        patches = None
        if "Y" in keys:
            y_patches = _squeeze_trailing(np.asarray(_load_key(archive, "Y", path)), 3)
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


def _eager_counts(
    path: str,
    key: str,
    stored: np.ndarray,
    n: int,
    photons: float | None,
    bad_pixels: np.ndarray | None,
    pattern_axis: str | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Counts (float32, ``(n, N, N)``) from values loaded in memory, and the bad pixels."""
    if stored.dtype.kind not in "biuf":
        raise ScanValidationError(f"dtype {stored.dtype} is not real numeric", source=path, key=key)
    stored = _pattern_first(stored, n, pattern_axis, path=path, key=key)
    if bad_pixels is not None and bad_pixels.shape != stored.shape[1:]:
        raise ScanValidationError(
            f"shape {bad_pixels.shape} does not match the patterns {stored.shape[1:]}",
            source=path,
            key="bad_pixels",
        )
    bad_pixels = _with_markers(path, key, stored, bad_pixels)
    if bad_pixels is not None:
        if bad_pixels.shape != stored.shape[1:]:
            raise ScanValidationError(
                f"shape {bad_pixels.shape} does not match the patterns {stored.shape[1:]}",
                source=path,
                key="bad_pixels",
            )
        stored = np.where(bad_pixels, 0, stored)
    check_intensities(stored, source=path, key=key)
    kind = _judge_values(path, key, stored)
    if kind == "counts":
        return stored_to_counts(stored, "counts"), bad_pixels
    if kind == "amplitudes":
        return stored_to_counts(stored, "amplitudes"), bad_pixels
    mean_total = float(np.square(stored, dtype=np.float64).sum()) / n
    scale = _normalised_scale(path, key, photons, mean_total)
    return stored_to_counts(stored, "amplitudes", scale), bad_pixels


def _with_markers(path: str, key: str, block: np.ndarray, bad_pixels: np.ndarray | None) -> np.ndarray | None:
    """``bad_pixels`` plus the pixels holding a detector marker in ``block`` (reported)."""
    markers = marker_pixels(block)
    if bad_pixels is not None:
        markers &= ~bad_pixels
    if not markers.any():
        return bad_pixels
    warnings.warn(
        f"{path}: '{key}': {int(markers.sum())} detector pixel(s) hold a dead-pixel, gap or saturation "
        "marker; masked",
        stacklevel=4,
    )
    return markers if bad_pixels is None else bad_pixels | markers


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
