"""The PtychoPINN NPZ contract (shared/spec/data-formats.md), read and written safely.

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
import os
import pickle
import warnings
import zipfile
from importlib import import_module
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import ScanFileError, ScanValidationError
from .scan import Scan, ScanMetadata, check_intensities

DIFFRACTION_KEYS = ("diffraction", "diff3d")
_METADATA_KEY = "_metadata"
_MAX_METADATA_BYTES = 16 * 1024 * 1024


def read_npy_header(stream: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a ``.npy`` stream, leaving it at the data."""
    version = np.lib.format.read_magic(stream)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = reader(stream)
    return tuple(shape), dtype


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
    except (pickle.UnpicklingError, ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        warnings.warn(f"{path}: '{_METADATA_KEY}' skipped: {exc}", stacklevel=3)
        return None


def _squeeze_trailing(array: np.ndarray, ndim: int) -> np.ndarray:
    while array.ndim > ndim and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def _pattern_first(array: np.ndarray, n: int, *, path: str, key: str) -> np.ndarray:
    """Return amplitudes as ``(n, N, N)``, accepting the legacy ``(N, N, n)`` layout."""
    array = _squeeze_trailing(array, 3)
    if array.ndim != 3:
        raise ScanValidationError(
            f"shape {array.shape} is not (n, N, N) or legacy (N, N, n)", source=path, key=key
        )
    first = array.shape[0] == n and array.shape[1] == array.shape[2]
    last = array.shape[2] == n and array.shape[0] == array.shape[1]
    if first:  # when n == N both layouts match; the newer (n, N, N) wins
        return array
    if last:
        return np.moveaxis(array, 2, 0)
    raise ScanValidationError(
        f"shape {array.shape} matches neither (n, N, N) nor (N, N, n) with n = {n} (the length of xcoords)",
        source=path,
        key=key,
    )


def _sample(values: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, flat.size // limit)
    return flat[::step]


def amplitudes_are_counts(intensity: np.ndarray) -> bool:
    """True when squared amplitudes are whole photon counts (raw data, not normalised).

    Every non-zero squared amplitude must be an integer >= 1 to within float rounding.
    """
    sample = _sample(intensity)
    nonzero = sample[sample > 0]
    if nonzero.size == 0:
        return True
    nearest = np.rint(nonzero)
    tolerance = 1e-3 + 1e-6 * nonzero
    return bool(np.all(np.abs(nonzero - nearest) <= tolerance) and np.all(nearest >= 1))


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
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        key = info.filename[:-4]
        try:
            with archive.open(info) as handle:
                shape, dtype = read_npy_header(handle)
                header_bytes = handle.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ScanFileError(f"unreadable array header ({exc})", source=path, key=key) from None
        if dtype.hasobject:
            continue
        declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        available = info.file_size - header_bytes
        if declared > available:
            raise ScanFileError(
                f"header claims shape {tuple(shape)} of {dtype} ({declared} bytes) but the "
                f"archive holds {available} bytes: the file is corrupt or truncated",
                source=path,
                key=key,
            )


def _load_key(archive: Any, key: str, path: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        raise ScanValidationError(f"cannot be read without pickle ({exc})", source=path, key=key) from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ScanFileError(
            f"cannot read this key ({exc}); is the file truncated?", source=path, key=key
        ) from None


def read_npz(path: str | os.PathLike, *, photons_per_pattern: float | None = None) -> Scan:
    """Read a PtychoPINN NPZ file into a :class:`Scan`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    photons_per_pattern : float, optional
        Mean photons per pattern for files holding *normalised* amplitudes, overriding the
        file's ``_metadata`` ``physics_parameters.nphotons``. Not needed for raw amplitudes
        (whose squares are whole counts).

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
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ScanFileError("no such file", source=path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ScanFileError(f"not a readable NPZ archive ({exc})", source=path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ScanFileError("holds a single .npy array, not an NPZ archive of named keys", source=path)
    with archive:
        _check_declared_sizes(path, archive.zip)
        keys = set(archive.files)
        meta_json = _read_metadata_json(path, archive.zip)

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

        amplitude = _load_key(archive, diff_key, path)
        if amplitude.dtype.kind not in "biuf":
            raise ScanValidationError(
                f"dtype {amplitude.dtype} is not real numeric", source=path, key=diff_key
            )
        amplitude = _pattern_first(amplitude, n, path=path, key=diff_key)
        check_intensities(amplitude, source=path, key=diff_key)
        intensity = np.square(amplitude, dtype=np.float64)  # float64: uint16 squares overflow
        if amplitudes_are_counts(intensity):
            counts = np.rint(intensity)
        else:
            photons = (
                photons_per_pattern if photons_per_pattern is not None else _photons_from_metadata(meta_json)
            )
            if photons is None:
                raise ScanValidationError(
                    "amplitudes are normalised (their squares are not whole photon counts) and "
                    "the file states no photon count: pass the mean photons per pattern with "
                    "--nphotons (Python: photons_per_pattern=...)",
                    source=path,
                    key=diff_key,
                )
            if not (np.isfinite(photons) and photons > 0):
                raise ScanValidationError(
                    f"photons per pattern must be positive, got {photons!r}", source=path
                )
            mean_total = intensity.sum(axis=(1, 2)).mean()
            if not mean_total > 0:
                raise ScanValidationError("all diffraction data are zero", source=path, key=diff_key)
            counts = intensity * (photons / mean_total)
        counts = counts.astype(np.float32)

        probe = _squeeze_trailing(np.asarray(_load_key(archive, "probeGuess", path)), 2)
        obj = None
        if "objectGuess" in keys:
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

    ours = (meta_json or {}).get("ptychopinn", {}) if isinstance(meta_json, dict) else {}
    meta_values = dict(ours.get("metadata", {})) if isinstance(ours, dict) else {}
    if meta_values.get("photons_per_pattern") is None:
        nominal = (
            photons_per_pattern if photons_per_pattern is not None else _photons_from_metadata(meta_json)
        )
        meta_values["photons_per_pattern"] = nominal
    metadata = ScanMetadata.from_dict(meta_values, source=path)
    return Scan(
        diffraction=counts,
        positions=np.stack([ys, xs], axis=1),
        probe=probe,
        object=obj,
        mask=mask,
        scan_index=scan_index,
        patches=patches,
        metadata=metadata,
        source=path,
    )


def write_npz(scan: Scan, path: str | os.PathLike) -> None:
    """Write a :class:`Scan` as a PtychoPINN NPZ file (atomically).

    Produces ``diffraction`` and ``diff3d`` (float32 amplitudes, ``(n, N, N)``),
    ``probeGuess``, ``objectGuess`` when known, ``xcoords``, ``ycoords``, ``scan_index``,
    ``Y`` when ground-truth patches are known, ``detector_mask`` when a mask is set, and
    ``_metadata`` (JSON with ``physics_parameters.nphotons`` and our own metadata), so that
    the file loads in the PtychoPINN tools and round-trips here.
    """
    counts = scan.get_patterns()
    amplitude = np.sqrt(counts.astype(np.float64)).astype(np.float32)
    totals = counts.sum(axis=(1, 2), dtype=np.float64)
    meta = {
        "physics_parameters": {"nphotons": float(totals.mean())},
        "ptychopinn": {
            "format": "ptychopinn-npz",
            "version": 1,
            "metadata": scan.metadata.to_dict(),
        },
    }
    arrays: dict[str, np.ndarray] = {
        "diffraction": amplitude,
        "diff3d": amplitude,
        "probeGuess": scan.probe if scan.probe.ndim == 2 else scan.probe_modes,
        "xcoords": scan.positions[:, 1].copy(),
        "ycoords": scan.positions[:, 0].copy(),
        "scan_index": scan.scan_index if scan.scan_index is not None else np.zeros(scan.n_patterns, np.int64),
        _METADATA_KEY: np.array(json.dumps(meta), dtype=object),
    }
    if scan.object is not None:
        arrays["objectGuess"] = scan.object
    if scan.patches is not None:
        arrays["Y"] = scan.patches
    if scan.mask is not None:
        arrays["detector_mask"] = scan.mask
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
