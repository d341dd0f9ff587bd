"""Import a scan held in plain arrays, with the conventions of whoever wrote them.

A *scan description* (YAML or JSON, ``format: arrays``) says which key holds what and in
which convention; :func:`read_arrays` converts it to the package's one convention
(docs/conventions.md: counts, zero frequency centred, ``(y, x)`` patch centres in object pixels)::

    format: arrays
    file: siemens-star-small.npz.bz2   # .npz, .npy, .h5/.hdf5; .bz2/.gz compressed too;
                                       # relative to this description
    diffraction: data                  # key (an HDF5 dataset path, or file.npy:  for .npy)
    positions: scan                    # (n, 2); or positions_x / positions_y, (n,) each
    probe: probe                       # optional: without, a focused spot from the mean pattern
    values: counts                     # counts | amplitude (sqrt of counts)
    zero_frequency: corner             # auto | centre | corner (detected, checked)
    positions_reference: corner        # centre | corner (of the N x N window)
    positions_order: yx                # yx | xy
    positions_units: pixels            # pixels | m (then pixel_size_m: ...)
    saturation: 65535                  # optional: counts at or above it are masked

Every value a description leaves out takes the default shown by :class:`ArrayLayout`.
Leading singleton axes (``(1, n, N, N)``, ``(1, 1, 1, 1, N, N)``) are dropped. NaN,
infinite, negative and saturated values, and an integer type's maximum (module gaps),
become masked detector pixels (masked in every pattern; their values set to zero). The
zero frequency is detected from the mean pattern and reported; a declared position that
contradicts the detection is refused.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import math
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ScanFileError, ScanValidationError
from .registry import ScanFormat, register_format
from .safety import (
    check_hdf5_stays_inside,
    check_npy_header,
    check_zip_members,
    load_document,
    read_hdf5_array,
    require_regular_file,
)
from .scan import Scan, ScanMetadata, marker_pixels

#: Largest decompressed size accepted from a .bz2 / .gz file (bytes): a guard against bombs.
MAX_DECOMPRESSED_BYTES = 8 * 1024**3
#: Energy ratio (centre against corner, or back) above which the zero frequency is decided.
ZERO_FREQUENCY_RATIO = 3.0

_CHOICES = {
    "values": ("counts", "amplitude"),
    "zero_frequency": ("auto", "centre", "corner"),
    "positions_reference": ("centre", "corner"),
    "positions_order": ("yx", "xy"),
    "positions_units": ("pixels", "m"),
    "pattern_axis": ("first", "last"),
}

_NUMBERS = ("pixel_size_m", "saturation", "energy_ev", "detector_distance_m", "detector_pixel_size_m")


@dataclass(frozen=True)
class ArrayLayout:
    """Where a scan's arrays are and which conventions they follow (see the module docstring).

    Attributes
    ----------
    file : str
        The array file (``.npz``, ``.npy``, ``.h5``/``.hdf5``, optionally ``.bz2``/``.gz``).
    diffraction : str
        Key of the patterns, ``(n, N, N)`` after dropping leading singleton axes.
    positions, positions_x, positions_y : str, optional
        Key of ``(n, 2)`` positions, or of the two coordinates separately.
    probe, object, mask : str, optional
        Keys of the probe ``(N, N)`` / ``(M, N, N)``, an object ``(H, W)``, a detector mask
        ``(N, N)`` (nonzero = valid).
    values : {"counts", "amplitude"}
    pattern_axis : {"first", "last"}
        Patterns along the first axis ``(n, N, N)``, or the last ``(N, N, n)`` (legacy stacks).
    zero_frequency : {"auto", "centre", "corner"}
        Where the patterns' zero frequency sits: at ``(N/2, N/2)`` or at ``(0, 0)``.
    positions_reference : {"centre", "corner"}
        Positions of the window centres, or of their corners with the smallest coordinates.
    positions_order : {"yx", "xy"}
    positions_units : {"pixels", "m"}
    pixel_size_m : float, optional
        Object pixel size (m); needed for positions in metres.
    saturation : float, optional
        Detector values at or above this are masked.
    energy_ev, detector_distance_m, detector_pixel_size_m : float, optional
        Geometry, stored in the scan's metadata.
    """

    file: str
    diffraction: str
    positions: str | None = None
    positions_x: str | None = None
    positions_y: str | None = None
    probe: str | None = None
    object: str | None = None
    mask: str | None = None
    values: str = "counts"
    pattern_axis: str = "first"
    zero_frequency: str = "auto"
    positions_reference: str = "centre"
    positions_order: str = "yx"
    positions_units: str = "pixels"
    pixel_size_m: float | None = None
    saturation: float | None = None
    energy_ev: float | None = None
    detector_distance_m: float | None = None
    detector_pixel_size_m: float | None = None

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be one of {', '.join(allowed)}")
        if (self.positions is None) == (self.positions_x is None and self.positions_y is None):
            raise ValueError("give either positions, or positions_x and positions_y")
        if self.positions is None and (self.positions_x is None or self.positions_y is None):
            raise ValueError("positions_x and positions_y go together")
        if self.positions_units == "m" and self.pixel_size_m is None:
            raise ValueError("positions_units m needs pixel_size_m (the object pixel size in metres)")
        for name in (
            "pixel_size_m",
            "saturation",
            "energy_ev",
            "detector_distance_m",
            "detector_pixel_size_m",
        ):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} = {value!r}: must be a finite number > 0")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ArrayLayout:
        """Read a scan description (YAML or JSON); ``file`` is taken relative to it."""
        path = Path(path)
        try:
            values = load_document(path, what="scan description")
        except ValueError as exc:
            raise ScanFileError(str(exc).removeprefix(f"{path}: "), source=str(path)) from None
        if not isinstance(values, dict) or values.get("format") != "arrays":
            raise ScanFileError("a scan description is a mapping with 'format: arrays'", source=str(path))
        values = dict(values)
        values.pop("format")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ScanFileError(
                f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", source=str(path)
            )
        if "file" not in values or "diffraction" not in values:
            raise ScanFileError("a scan description needs 'file' and 'diffraction'", source=str(path))
        values["file"] = os.path.normpath(path.parent / str(values["file"]))
        for name in _NUMBERS:  # YAML 1.1 reads 5e-08 (no dot) as a string
            if isinstance(values.get(name), str):
                try:
                    values[name] = float(values[name])
                except ValueError:
                    raise ScanFileError(
                        f"{name} = {values[name]!r} is not a number", source=str(path)
                    ) from None
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ScanFileError(str(exc), source=str(path)) from None


def is_scan_description(path: str | os.PathLike) -> bool:
    """True for a ``.yaml``/``.yml``/``.json`` file (read with :meth:`ArrayLayout.from_file`)."""
    return Path(path).suffix.lower() in (".yaml", ".yml", ".json") and os.path.isfile(path)


def _decompressed(path: str) -> io.BytesIO | str:
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(Path(path).suffix.lower())
    if opener is None:
        return path
    buffer = io.BytesIO()
    with opener(path, "rb") as stream:
        while chunk := stream.read(1 << 24):
            buffer.write(chunk)
            if buffer.tell() > MAX_DECOMPRESSED_BYTES:
                raise ScanFileError(
                    f"decompresses to more than {MAX_DECOMPRESSED_BYTES / 1024**3:.0f} GiB; refused",
                    source=path,
                )
    buffer.seek(0)
    return buffer


def _kind(path: str) -> str:
    name = Path(path).name.lower()
    for suffix in (".bz2", ".gz"):
        name = name.removesuffix(suffix)
    for suffix, kind in (
        (".npz", "npz"),
        (".npy", "npy"),
        (".h5", "hdf5"),
        (".hdf5", "hdf5"),
        (".cxi", "hdf5"),
    ):
        if name.endswith(suffix):
            return kind
    raise ScanFileError("cannot tell the array format; use .npz, .npy, .h5 or .hdf5", source=path)


class _ArrayFile:
    """Reads named arrays from one file without unpickling anything."""

    def __init__(self, path: str):
        require_regular_file(path)
        self.path = path
        self.kind = _kind(path)
        try:
            handle = _decompressed(path)
            if self.kind == "npz":
                self.archive = np.load(handle, allow_pickle=False)
            elif self.kind == "npy":
                stream = handle if isinstance(handle, io.BytesIO) else open(handle, "rb")
                with stream:
                    size = stream.seek(0, io.SEEK_END)
                    stream.seek(0)
                    check_npy_header(stream, size, source=path)
                    self.array = np.load(stream, allow_pickle=False)
            else:
                import h5py

                self.h5 = h5py.File(handle, "r")
        except (ScanFileError, ScanValidationError):
            raise
        except (
            OSError,
            EOFError,
            ValueError,
            zipfile.BadZipFile,
        ) as exc:  # truncated, corrupt, not that format
            raise ScanFileError(f"cannot be read as {self.kind} ({exc})", source=path) from None
        if self.kind == "npz":
            check_zip_members(self.archive.zip, path)
        elif self.kind == "hdf5":
            check_hdf5_stays_inside(self.h5, path)

    def get(self, key: str) -> np.ndarray:
        try:
            if self.kind == "npz":
                return np.asarray(self.archive[key])
            if self.kind == "npy":
                return self.array
            if key not in self.h5:
                raise KeyError(key)
            return read_hdf5_array(self.h5, key, self.path)
        except KeyError:
            keys = list(self.archive.files) if self.kind == "npz" else list(getattr(self, "h5", {}))
            raise ScanValidationError(
                f"no such key; the file holds {', '.join(keys)}", source=self.path, key=key
            ) from None
        except ValueError as exc:  # e.g. an object array that would need pickle
            raise ScanValidationError(f"cannot be read safely ({exc})", source=self.path, key=key) from None


def _squeeze_leading(array: np.ndarray, ndim: int, *, source: str, key: str) -> np.ndarray:
    while array.ndim > ndim and array.shape[0] == 1:
        array = array[0]
    if array.ndim != ndim:
        raise ScanValidationError(
            f"shape {array.shape} cannot be read as {ndim} axes (only leading singleton axes are dropped)",
            source=source,
            key=key,
        )
    return array


def detect_zero_frequency(mean_pattern: np.ndarray) -> tuple[str | None, float]:
    """Where a mean diffraction pattern's zero frequency sits: ``centre``, ``corner`` or None.

    Compares the energy within ``N/8`` pixels of the centre ``(N/2, N/2)`` with that within
    ``N/8`` pixels of the corners (the centre after ``fftshift``).

    Returns
    -------
    (str or None, float)
        The verdict (None when neither dominates by :data:`ZERO_FREQUENCY_RATIO`) and the
        ratio centre / corner.
    """
    size = mean_pattern.shape[-1]
    axis = np.arange(size) - size // 2
    disk = (axis[:, None] ** 2 + axis[None, :] ** 2) <= (size / 8) ** 2
    pattern = np.asarray(mean_pattern, dtype=np.float64)
    centre = float(pattern[disk].sum())
    corner = float(np.fft.fftshift(pattern)[disk].sum())
    ratio = centre / corner if corner > 0 else math.inf
    if ratio >= ZERO_FREQUENCY_RATIO:
        return "centre", ratio
    if ratio <= 1 / ZERO_FREQUENCY_RATIO:
        return "corner", ratio
    return None, ratio


def _invalid_pixels(data: np.ndarray, saturation: float | None) -> np.ndarray:
    """Boolean ``(N, N)``: pixels invalid in any pattern."""
    invalid = np.zeros(data.shape[1:], dtype=bool)
    for start in range(0, len(data), 256):
        block = data[start : start + 256]
        bad = np.zeros(block.shape, dtype=bool)
        if block.dtype.kind == "f":
            bad |= ~np.isfinite(block)
            with np.errstate(invalid="ignore"):
                bad |= block < 0
        elif block.dtype.kind == "i":
            bad |= block < 0
        bad |= marker_pixels(block)[None]
        if saturation is not None:
            with np.errstate(invalid="ignore"):
                bad |= block >= saturation
        invalid |= bad.any(axis=0)
    return invalid


def read_arrays(layout: ArrayLayout | str | os.PathLike) -> Scan:
    """Read a scan from plain arrays as a description says (see the module docstring).

    Parameters
    ----------
    layout : ArrayLayout or path
        The description, or the path of a YAML/JSON file holding it.

    Returns
    -------
    Scan
        Counts with the zero frequency centred, ``(y, x)`` patch centres in object pixels
        (shifted so the smallest lies at ``N/2`` when the file has no object), the probe,
        and a mask of the invalid detector pixels. What was detected and masked is reported
        with :func:`warnings.warn`.

    Raises
    ------
    ScanFileError, ScanValidationError
        Naming the file and key.
    """
    if not isinstance(layout, ArrayLayout):
        layout = ArrayLayout.from_file(layout)
    source = layout.file
    arrays = _ArrayFile(source)

    data = arrays.get(layout.diffraction)
    if layout.pattern_axis == "last":  # the legacy (N, N, n) stack
        data = np.moveaxis(data, -1, 0)
    data = _squeeze_leading(data, 3, source=source, key=layout.diffraction)
    if data.dtype.kind not in "biuf":
        raise ScanValidationError(
            f"dtype {data.dtype} is not real numeric", source=source, key=layout.diffraction
        )
    n, size = data.shape[0], data.shape[-1]
    invalid = _invalid_pixels(data, layout.saturation)
    values = np.where(invalid[None], 0, data)
    squared = (
        values.astype(np.float64) ** 2 if layout.values == "amplitude" else values
    )  # float64: no overflow
    counts = squared.astype(np.float32)
    notes = []
    if invalid.any():
        notes.append(f"{int(invalid.sum())} detector pixel(s) hold NaN, negative, saturated or gap values "
                     "in some pattern: masked (left out of every fit)")  # fmt: skip

    mean_pattern = counts.mean(axis=0)
    detected, ratio = detect_zero_frequency(mean_pattern)
    declared = layout.zero_frequency
    if declared == "auto":
        if detected is None:
            raise ScanValidationError(
                f"cannot tell where the zero frequency sits (centre/corner energy ratio {ratio:.3g}); "
                "declare zero_frequency: centre or corner",
                source=source,
                key=layout.diffraction,
            )
        declared = detected
    elif detected is not None and detected != declared:
        raise ScanValidationError(
            f"zero_frequency is declared {declared}, but the mean pattern has it at the {detected} "
            f"(centre/corner energy ratio {ratio:.3g}); fix the description",
            source=source,
            key=layout.diffraction,
        )
    notes.append(f"zero frequency at the {declared} (detected: {detected or 'undecided'}, ratio {ratio:.3g})")
    if declared == "corner":
        counts = np.fft.fftshift(counts, axes=(-2, -1))
        invalid, mean_pattern = np.fft.fftshift(invalid), np.fft.fftshift(mean_pattern)

    positions = _positions(arrays, layout, n, size)
    obj = None
    if layout.object is not None:
        obj = _squeeze_leading(arrays.get(layout.object), 2, source=source, key=layout.object)
    else:
        positions = positions - positions.min(axis=0) + size / 2
    if layout.probe is not None:
        probe = arrays.get(layout.probe)
        probe = _squeeze_leading(probe, 3 if probe.ndim >= 3 and probe.shape[-3] > 1 else 2,
                                 source=source, key=layout.probe)  # fmt: skip
    else:
        probe = probe_from_mean_pattern(mean_pattern)
        notes.append(
            "no probe given: started from the mean pattern's amplitude with a flat phase, a focused "
            "spot; a beam defocused on the sample is far wider, so give a measured or modelled "
            "probe when there is one (on the real Velociprobe scan this guess does not converge)"
        )
    mask = None
    if layout.mask is not None:
        mask = _squeeze_leading(arrays.get(layout.mask), 2, source=source, key=layout.mask) != 0
        if declared == "corner":
            mask = np.fft.fftshift(mask)
    if invalid.any():
        mask = ~invalid if mask is None else mask & ~invalid
    metadata = ScanMetadata(
        energy_ev=layout.energy_ev, detector_distance_m=layout.detector_distance_m,
        detector_pixel_size_m=layout.detector_pixel_size_m, object_pixel_size_m=layout.pixel_size_m,
    )  # fmt: skip
    for note in notes:
        warnings.warn(f"{source}: {note}", UserWarning, stacklevel=2)
    return Scan(diffraction=counts, positions=positions, probe=probe, object=obj, mask=mask,
                metadata=metadata, source=source)  # fmt: skip


def _positions(arrays: _ArrayFile, layout: ArrayLayout, n: int, size: int) -> np.ndarray:
    source = arrays.path
    if layout.positions is not None:
        positions = _squeeze_leading(arrays.get(layout.positions), 2, source=source, key=layout.positions)
        key = layout.positions
    else:
        x = _squeeze_leading(arrays.get(layout.positions_x), 1, source=source, key=layout.positions_x)
        y = _squeeze_leading(arrays.get(layout.positions_y), 1, source=source, key=layout.positions_y)
        if x.shape != y.shape:
            raise ScanValidationError(
                f"positions_x {x.shape} and positions_y {y.shape} differ in shape", source=source
            )
        positions = np.stack([y, x], axis=1)  # named keys: their order is no question
        key = layout.positions_x
    if positions.shape != (n, 2):
        raise ScanValidationError(f"shape {positions.shape} is not (n, 2) for n = {n} patterns",
                                  source=source, key=key)  # fmt: skip
    if positions.dtype.kind not in "biuf" or not np.isfinite(positions).all():
        raise ScanValidationError("positions must be finite real numbers", source=source, key=key)
    positions = positions.astype(np.float64)
    if layout.positions is not None and layout.positions_order == "xy":
        positions = positions[:, ::-1]
    if layout.positions_units == "m":
        positions = positions / layout.pixel_size_m
    if layout.positions_reference == "corner":
        positions = positions + size / 2
    return np.ascontiguousarray(positions)


def probe_from_mean_pattern(mean_pattern: np.ndarray) -> np.ndarray:
    """A probe guess from the data alone: the inverse transform of the mean amplitude.

    ``P = F^-1[sqrt(<I>)]`` (flat phase, zero frequency centred): the right spectrum, but a
    focused spot; a beam defocused on the sample is wider, and blind refinement does not
    recover that from here (docs/benchmarks.md). Calibrated later.
    """
    amplitude = np.sqrt(np.clip(np.asarray(mean_pattern, np.float64), 0, None))
    field = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(amplitude), norm="ortho"))
    return field.astype(np.complex64)


def description_contents(path: str) -> list:
    """The description's fields: which key holds what, and the conventions declared."""
    try:
        layout = ArrayLayout.from_file(path)
    except ScanFileError as exc:
        raise ValueError(exc.reason) from None
    return [(f.name, (), str(getattr(layout, f.name))) for f in dataclasses.fields(layout)
            if getattr(layout, f.name) is not None]  # fmt: skip


register_format(
    ScanFormat(
        name="arrays",
        description="arrays in their own conventions, described by a YAML/JSON file (format: arrays)",
        detect=lambda path, head: is_scan_description(path),
        read=read_arrays,
        contents=description_contents,
        order=0,
    )
)
