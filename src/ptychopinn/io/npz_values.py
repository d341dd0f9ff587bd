"""The values of an NPZ file's diffraction array: their layout and kind, converted to counts.

Value classification (counts, raw amplitudes or normalised amplitudes; docs/conventions.md,
"NPZ reading") and the conversion to float32 counts, eagerly or memory-mapped block by block
(the stored CRC checked); :func:`~ptychopinn.io.npz.read_npz` resolves the keys and calls these.
"""

from __future__ import annotations

import logging
import struct
import warnings
import zipfile
import zlib
from typing import Any

import numpy as np

from .errors import ScanFileError, ScanValidationError
from .lazy import MappedPatterns, stored_to_counts
from .scan import check_intensities, marker_pixels

log = logging.getLogger("ptychopinn.io")

#: Patterns sampled to tell whole counts from normalised amplitudes in a mapped member.
DETECTION_PATTERNS = 64

def squeeze_trailing(array: np.ndarray, ndim: int) -> np.ndarray:
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
    array = squeeze_trailing(array, 3)
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


def photons_from_metadata(meta: dict[str, Any] | None) -> float | None:
    if not meta:
        return None
    physics = meta.get("physics_parameters")
    if isinstance(physics, dict) and physics.get("nphotons") is not None:
        try:
            return float(physics["nphotons"])
        except (TypeError, ValueError):
            return None
    return None


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


def mapped_member(
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


def read_mapped_counts(
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
    picks = np.unique(np.linspace(0, n - 1, min(n, DETECTION_PATTERNS)).astype(np.int64))
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


def eager_counts(
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
