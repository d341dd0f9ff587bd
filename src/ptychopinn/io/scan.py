"""The one in-memory scan type every reader produces and every writer consumes.

Conventions (docs/conventions.md):

- ``diffraction``: measured intensities in **photon counts**, ``(n, N, N)`` float32, zero
  frequency at pixel ``(N//2, N//2)``; either an in-memory array or a lazily read source;
- ``positions``: ``(n, 2)`` float64, ``(y, x)`` in object pixels (the patch pixel
  ``(N/2, N/2)`` sits at the position);
- ``probe``: complex64, ``(N, N)`` or ``(modes, N, N)``;
- ``object``: optional complex64 ``(H, W)`` ground truth (or a previous estimate);
- ``mask``: optional bool ``(N, N)``, True where a detector pixel is valid.

A :class:`Scan` is validated when it is built; every refusal is a
:class:`~ptychopinn.io.errors.ScanValidationError` naming the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..units import energy_ev_to_wavelength_m, object_pixel_size_m
from .errors import ScanValidationError

#: Tolerance (pixels) when checking that patches lie inside the object.
_POSITION_TOLERANCE = 1e-6


@runtime_checkable
class PatternSource(Protocol):
    """Array-like, lazily read diffraction data: ``shape``, ``len`` and slicing to float32."""

    shape: tuple[int, int, int]

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any) -> np.ndarray: ...


#: Physically plausible geometry for far-field X-ray ptychography (a value outside is in the
#: wrong unit): (low, high, unit).
PLAUSIBLE_RANGES = {
    "energy_ev": (10.0, 1e6, "eV"),
    "detector_distance_m": (1e-3, 1e3, "m"),
    "detector_pixel_size_m": (1e-7, 1e-2, "m"),
    "object_pixel_size_m": (1e-12, 1e-2, "m"),
}


@dataclass(frozen=True)
class ScanMetadata:
    """Experimental geometry and dose; every field is optional and in SI units.

    Attributes
    ----------
    energy_ev : float, optional
        Photon energy (eV).
    detector_distance_m : float, optional
        Sample-to-detector distance (m).
    detector_pixel_size_m : float, optional
        Detector pixel pitch (m).
    object_pixel_size_m : float, optional
        Object-plane pixel size (m). When absent it follows from the geometry,
        ``dx = lambda z / (N p)``; see :meth:`Scan.pixel_size_m`.
    photons_per_pattern : float, optional
        Requested or nominal mean photon count per pattern.
    origin_x_m, origin_y_m : float, optional
        Where object pixel (0, 0) lies in the instrument's frame (m), when the positions
        came in metres (ptychodus); lets products written back keep the same metres.
    """

    energy_ev: float | None = None
    detector_distance_m: float | None = None
    detector_pixel_size_m: float | None = None
    object_pixel_size_m: float | None = None
    photons_per_pattern: float | None = None
    origin_x_m: float | None = None
    origin_y_m: float | None = None

    @property
    def wavelength_m(self) -> float | None:
        """Wavelength (m) from the photon energy, or None when the energy is unknown."""
        return None if self.energy_ev is None else energy_ev_to_wavelength_m(self.energy_ev)

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str | None = None) -> ScanMetadata:
        """Build from a mapping, ignoring unknown keys and validating the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, value in values.items():
            if name not in known or value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ScanValidationError(
                    f"metadata '{name}' must be a number, got {value!r}", source=source
                ) from None
            kwargs[name] = number
        meta = cls(**kwargs)
        meta.validate(source=source)
        return meta

    def validate(self, *, source: str | None = None) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name.startswith("origin_") and math.isfinite(value):
                continue  # a frame origin may be anywhere
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ScanValidationError(
                    f"metadata '{f.name}' must be a finite positive number, got {value!r}",
                    source=source,
                )
            if value is not None and f.name in PLAUSIBLE_RANGES:
                low, high, unit = PLAUSIBLE_RANGES[f.name]
                if not low <= value <= high:
                    raise ScanValidationError(
                        f"metadata '{f.name}' = {value:.6g} {unit} lies outside the physical range "
                        f"{low:g} .. {high:g} {unit}: a value in the wrong unit (mm or nm for m, keV "
                        "for eV)?",
                        source=source,
                    )


#: What detectors write into dead, gap or overflowing pixels, never a count: 2^32 - 1 and above.
DEAD_PIXEL_VALUE = 2**32 - 1


def marker_pixels(block: np.ndarray) -> np.ndarray:
    """Boolean ``(N, N)``: pixels holding a detector marker in any pattern of ``block``.

    Markers are the largest value of an integer dtype (saturation, or 2^32 - 1 for dead and
    gap pixels of 32-bit detectors) and any value >= 2^32 - 1.
    """
    block = np.asarray(block)
    bad = np.zeros(block.shape[1:], dtype=bool)
    if block.dtype.kind in "iu":
        bad |= (block == np.iinfo(block.dtype).max).any(axis=0)
    with np.errstate(invalid="ignore"):
        bad |= (block >= DEAD_PIXEL_VALUE).any(axis=0)
    return bad


def check_intensities(values: np.ndarray, *, source: str | None, key: str, first_index: int = 0) -> None:
    """Refuse non-finite or negative counts, naming the first offending pattern.

    Parameters
    ----------
    values : numpy.ndarray
        A block of patterns ``(m, N, N)``.
    source, key : str
        Where the block came from, for the message.
    first_index : int
        Index of ``values[0]`` in the whole scan, so the message names the real pattern.
    """
    if values.size and values.max() >= DEAD_PIXEL_VALUE:
        pattern, row, col = (int(v) for v in np.argwhere(values >= DEAD_PIXEL_VALUE)[0])
        raise ScanValidationError(
            f"pixel ({row}, {col}) of pattern {pattern + first_index} holds {values.max():.10g}, a "
            "detector's dead-pixel or overflow marker, not a count: mask the pixel (a detector "
            "mask or bad-pixel map)",
            source=source,
            key=key,
        )
    if values.dtype.kind in "iu":
        if values.dtype.kind == "i" and values.size and values.min() < 0:
            bad = int(np.argwhere(values < 0)[0][0]) + first_index
            raise ScanValidationError(
                f"negative value(s) (first in pattern {bad}); diffraction data must be >= 0",
                source=source,
                key=key,
            )
        return
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.argwhere(~finite)[0][0]) + first_index
        count = int((~finite).sum())
        raise ScanValidationError(
            f"{count} non-finite value(s) (NaN or inf), first in pattern {bad}",
            source=source,
            key=key,
        )
    if values.size and values.min() < 0:
        bad = int(np.argwhere(values < 0)[0][0]) + first_index
        raise ScanValidationError(
            f"negative value {values.min():.6g} (first in pattern {bad}); "
            "diffraction data (counts or amplitudes) must be >= 0",
            source=source,
            key=key,
        )


def _require_numeric(array: np.ndarray, *, key: str, source: str | None, complex_ok: bool) -> None:
    kinds = "biufc" if complex_ok else "biuf"
    if array.dtype.kind not in kinds:
        expected = "numeric" if complex_ok else "real numeric"
        raise ScanValidationError(f"dtype {array.dtype} is not {expected}", source=source, key=key)


def _require_finite(array: np.ndarray, *, key: str, source: str | None) -> None:
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        count = int((~np.isfinite(array)).sum())
        raise ScanValidationError(f"{count} non-finite value(s) (NaN or inf)", source=source, key=key)


@dataclass(frozen=True, eq=False)
class Scan:
    """A ptychographic scan in the package's units. See the module docstring.

    Building a Scan validates it and converts dtypes (counts to float32, positions to
    float64, complex fields to complex64). In-memory intensities are checked in full; lazily
    read ones are checked block by block as they are read (and in full by ``validate(full=True)``
    or ``ptychopinn inspect``).
    """

    diffraction: np.ndarray | PatternSource
    positions: np.ndarray
    probe: np.ndarray
    object: np.ndarray | None = None
    mask: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    patches: np.ndarray | None = None
    metadata: ScanMetadata = field(default_factory=ScanMetadata)
    source: str | None = None

    def __post_init__(self) -> None:
        self._validate_and_coerce()

    # -- construction -------------------------------------------------------------------
    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate_and_coerce(self) -> None:
        src = self.source
        diff = self.diffraction
        if isinstance(diff, np.ndarray):
            _require_numeric(diff, key="diffraction", source=src, complex_ok=False)
        elif not isinstance(diff, PatternSource):
            try:
                diff = np.asarray(diff)
            except Exception as exc:  # noqa: BLE001 - report any conversion failure the same way
                raise ScanValidationError(
                    f"cannot be read as an array ({exc})", source=src, key="diffraction"
                ) from None
            _require_numeric(diff, key="diffraction", source=src, complex_ok=False)
        shape = tuple(diff.shape)
        if len(shape) != 3:
            raise ScanValidationError(f"shape {shape} is not (n, N, N)", source=src, key="diffraction")
        n, height, width = shape
        if n == 0:
            raise ScanValidationError("the scan holds no patterns (n = 0)", source=src, key="diffraction")
        if height != width:
            raise ScanValidationError(
                f"patterns must be square, got {height} x {width}", source=src, key="diffraction"
            )
        if height < 2 or height % 2:
            raise ScanValidationError(
                f"pattern size N = {height} must be even and >= 2", source=src, key="diffraction"
            )
        if isinstance(diff, np.ndarray):
            check_intensities(diff, source=src, key="diffraction")
            diff = np.ascontiguousarray(diff, dtype=np.float32)
        self._set("diffraction", diff)
        size = height

        positions = np.asarray(self.positions)
        _require_numeric(positions, key="positions", source=src, complex_ok=False)
        if positions.shape != (n, 2):
            raise ScanValidationError(
                f"shape {positions.shape} does not match (n, 2) = ({n}, 2) for {n} patterns",
                source=src,
                key="positions",
            )
        positions = positions.astype(np.float64)
        _require_finite(positions, key="positions", source=src)
        self._set("positions", positions)

        probe = np.asarray(self.probe)
        _require_numeric(probe, key="probe", source=src, complex_ok=True)
        if probe.ndim not in (2, 3) or probe.shape[-2:] != (size, size):
            raise ScanValidationError(
                f"shape {probe.shape} is not (N, N) or (modes, N, N) with N = {size} (the pattern size)",
                source=src,
                key="probe",
            )
        if probe.ndim == 3 and probe.shape[0] == 0:
            raise ScanValidationError("probe has zero modes", source=src, key="probe")
        _require_finite(probe, key="probe", source=src)
        probe = probe.astype(np.complex64)
        if not np.any(probe):
            raise ScanValidationError("probe is zero everywhere", source=src, key="probe")
        self._set("probe", probe)

        if self.object is not None:
            obj = np.asarray(self.object)
            _require_numeric(obj, key="object", source=src, complex_ok=True)
            if obj.ndim != 2:
                raise ScanValidationError(f"shape {obj.shape} is not (H, W)", source=src, key="object")
            _require_finite(obj, key="object", source=src)
            obj = obj.astype(np.complex64)
            self._check_positions_inside(obj.shape, positions, size)
            self._set("object", obj)

        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.shape != (size, size):
                raise ScanValidationError(
                    f"shape {mask.shape} does not match the pattern size ({size}, {size})",
                    source=src,
                    key="mask",
                )
            if mask.dtype.kind not in "biu":
                raise ScanValidationError(
                    f"dtype {mask.dtype} is not boolean (True = valid pixel)",
                    source=src,
                    key="mask",
                )
            mask = mask.astype(bool)
            if not mask.any():
                raise ScanValidationError("every detector pixel is masked", source=src, key="mask")
            self._set("mask", mask)

        if self.scan_index is not None:
            index = np.asarray(self.scan_index)
            if index.shape != (n,) or index.dtype.kind not in "iu":
                raise ScanValidationError(
                    f"must be {n} integers, got shape {index.shape} dtype {index.dtype}",
                    source=src,
                    key="scan_index",
                )
            self._set("scan_index", index.astype(np.int64))

        if self.patches is not None:
            patches = np.asarray(self.patches)
            _require_numeric(patches, key="patches", source=src, complex_ok=True)
            if patches.shape != (n, size, size):
                raise ScanValidationError(
                    f"shape {patches.shape} does not match (n, N, N) = ({n}, {size}, {size})",
                    source=src,
                    key="patches",
                )
            _require_finite(patches, key="patches", source=src)
            self._set("patches", patches.astype(np.complex64))

        if not isinstance(self.metadata, ScanMetadata):
            raise ScanValidationError(
                f"metadata must be a ScanMetadata, got {type(self.metadata).__name__}", source=src
            )
        self.metadata.validate(source=src)

    def _check_positions_inside(
        self, object_shape: tuple[int, int], positions: np.ndarray, size: int
    ) -> None:
        half = size // 2
        low = positions - half
        high = positions + half
        limit = np.array(object_shape, dtype=np.float64)
        outside = (low < -_POSITION_TOLERANCE).any(axis=1) | (high > limit + _POSITION_TOLERANCE).any(axis=1)
        if outside.any():
            k = int(np.argmax(outside))
            raise ScanValidationError(
                f"{int(outside.sum())} position(s) put the {size}x{size} patch outside the "
                f"object of shape {object_shape}; first: pattern {k} at (y, x) = "
                f"({positions[k, 0]:.3f}, {positions[k, 1]:.3f}); a patch at (y, x) covers "
                f"rows y-{half}..y+{half - 1}",
                source=self.source,
                key="positions",
            )

    # -- properties -----------------------------------------------------------------------
    @property
    def n_patterns(self) -> int:
        return int(self.diffraction.shape[0])

    @property
    def pattern_size(self) -> int:
        """N, the side of every pattern (and of the probe)."""
        return int(self.diffraction.shape[-1])

    @property
    def probe_modes(self) -> np.ndarray:
        """The probe as a mode stack ``(modes, N, N)``."""
        return self.probe if self.probe.ndim == 3 else self.probe[None]

    @property
    def is_lazy(self) -> bool:
        return not isinstance(self.diffraction, np.ndarray)

    def pixel_size_m(self) -> float | None:
        """Object pixel size (m): the stored value, else ``lambda z / (N p)``, else None."""
        meta = self.metadata
        if meta.object_pixel_size_m is not None:
            return meta.object_pixel_size_m
        if None in (meta.energy_ev, meta.detector_distance_m, meta.detector_pixel_size_m):
            return None
        return object_pixel_size_m(
            meta.wavelength_m,
            meta.detector_distance_m,
            self.pattern_size,
            meta.detector_pixel_size_m,
        )

    # -- data access ------------------------------------------------------------------------
    def get_patterns(self, index: Any = slice(None)) -> np.ndarray:
        """Patterns (counts, float32) for an index, slice or index array; reads lazily."""
        return np.asarray(self.diffraction[index], dtype=np.float32)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, patterns)`` blocks of at most ``batch_size`` patterns, in order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, self.n_patterns, batch_size):
            yield start, self.get_patterns(slice(start, min(start + batch_size, self.n_patterns)))

    def total_counts(self, batch_size: int = 4096) -> np.ndarray:
        """Total counts per pattern, ``(n,)`` float64 (summed in float64, streaming)."""
        totals = np.empty(self.n_patterns, dtype=np.float64)
        for start, block in self.iter_batches(batch_size):
            totals[start : start + len(block)] = block.sum(axis=(1, 2), dtype=np.float64)
        return totals

    def validate(self, *, full: bool = False, batch_size: int = 4096) -> None:
        """Re-run the checks; with ``full=True`` also read and check every lazy pattern."""
        self._validate_and_coerce()
        if full and self.is_lazy:
            for start, block in self.iter_batches(batch_size):
                check_intensities(block, source=self.source, key="diffraction", first_index=start)

    def subset(self, indices: Any) -> Scan:
        """The scan restricted to some patterns (index array or boolean mask), loaded in memory.

        Positions keep their object-pixel frame, so the subset's reconstruction lies where the
        whole scan's does; the object (a ground truth) is kept whole.
        """
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        if indices.size == 0:
            raise ScanValidationError("the selection holds no pattern", source=self.source)
        return self.replace(
            diffraction=self.get_patterns(indices),
            positions=self.positions[indices],
            scan_index=None if self.scan_index is None else self.scan_index[indices],
            patches=None if self.patches is None else self.patches[indices],
        )

    def replace(self, **changes: Any) -> Scan:
        """A validated copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def load(self) -> Scan:
        """A copy with the diffraction data fully in memory (no-op for in-memory scans)."""
        if not self.is_lazy:
            return self
        return self.replace(diffraction=self.get_patterns())
