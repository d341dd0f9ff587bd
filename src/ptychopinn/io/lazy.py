"""Lazily read diffraction data: slices come off the disk on demand, never the whole file."""

from __future__ import annotations

import mmap
import os
import warnings
from typing import Any

import h5py
import numpy as np

from .errors import ScanFileError, ScanValidationError
from .safety import DEFAULT_LIMITS, hdf5_dataset, open_hdf5
from .scan import check_intensities, marker_pixels


class HDF5Patterns:
    """Diffraction patterns ``(n, N, N)`` in an HDF5 dataset, read slice by slice.

    Each read returns float32 photon counts and is checked (finite, non-negative) before it
    is handed out, so a corrupt block is reported with the file, the dataset and the pattern
    index instead of propagating NaNs. The file is opened on first use in each process (so
    the object can be passed to data-loader workers) and kept open until :meth:`close`.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    key : str
        Dataset path inside the file.
    rows : numpy.ndarray, optional
        Stored rows to serve, in order (pattern ``i`` is stored row ``rows[i]``); default all.
    bad_pixels : numpy.ndarray, optional
        Bool ``(N, N)``, True where a detector pixel is bad: set to zero before the checks
        (such pixels may hold anything; the scan's mask leaves them out).
    links_within_folder : bool
        Admit external links and storage to regular files in the file's own folder
        (:func:`~ptychopinn.io.safety.open_hdf5`); refused by default.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        key: str,
        *,
        rows: np.ndarray | None = None,
        bad_pixels: np.ndarray | None = None,
        links_within_folder: bool = False,
    ):
        self.path = os.fspath(path)
        self.key = key
        self.links_within_folder = links_within_folder
        self._file: h5py.File | None = None
        self._pid: int | None = None
        dataset = self._dataset()
        if dataset.ndim != 3:
            raise ScanValidationError(f"shape {dataset.shape} is not (n, N, N)", source=self.path, key=key)
        if dataset.dtype.kind not in "biuf":
            raise ScanValidationError(f"dtype {dataset.dtype} is not real numeric", source=self.path, key=key)
        try:
            stored = float(dataset.id.get_storage_size())
        except (OSError, RuntimeError, ValueError):
            stored = 0.0
        DEFAULT_LIMITS.check_stored(
            float(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize,
            stored,
            source=self.path,
            key=key,
            what=f"shape {dataset.shape} of {dataset.dtype}",
        )
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if (
            self.rows is not None
            and self.rows.size
            and not (0 <= self.rows.min() and self.rows.max() < dataset.shape[0])
        ):
            raise ScanValidationError("selected rows lie outside the dataset", source=self.path, key=key)
        self.bad_pixels = None if bad_pixels is None else np.asarray(bad_pixels, dtype=bool)
        if self.bad_pixels is not None and self.bad_pixels.shape != tuple(dataset.shape[1:]):
            raise ScanValidationError(
                f"bad-pixel mask {self.bad_pixels.shape} does not match patterns {dataset.shape[1:]}",
                source=self.path,
                key=key,
            )
        n = dataset.shape[0] if self.rows is None else self.rows.size
        self.shape: tuple[int, int, int] = (int(n), int(dataset.shape[1]), int(dataset.shape[2]))
        self.dtype = np.dtype(np.float32)
        self.marker_pixels = self._sample_markers(dataset)
        if self.marker_pixels.any():
            bad = self.marker_pixels if self.bad_pixels is None else self.bad_pixels | self.marker_pixels
            self.bad_pixels = bad

    def _sample_markers(self, dataset: h5py.Dataset) -> np.ndarray:
        """Pixels holding a detector marker in a sample of up to 64 patterns (masked as bad)."""
        if dataset.shape[0] == 0:
            return np.zeros(dataset.shape[1:], dtype=bool)
        picks = np.unique(np.linspace(0, dataset.shape[0] - 1, min(dataset.shape[0], 64)).astype(np.int64))
        try:
            sample = dataset[picks]
        except (OSError, ValueError, IndexError) as exc:
            raise ScanFileError(f"cannot read patterns ({exc}); is the file truncated?", source=self.path,
                                key=self.key) from None  # fmt: skip
        markers = marker_pixels(sample)
        if self.bad_pixels is not None:
            markers &= ~self.bad_pixels
        if markers.any():
            warnings.warn(
                f"{self.path}: '{self.key}': {int(markers.sum())} detector pixel(s) hold a dead-pixel, gap "
                "or saturation marker; masked",
                stacklevel=4,
            )
        return markers

    def _dataset(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = open_hdf5(self.path, links_within_folder=self.links_within_folder)
            self._pid = os.getpid()
        return hdf5_dataset(self._file, self.key, self.path)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if self.rows is not None:  # serve a selection: read the stored rows it maps to
            single = isinstance(index, (int, np.integer))
            first = index.indices(self.shape[0])[0] if isinstance(index, slice) else 0
            stored = self.rows[index]
            block = self._read(np.atleast_1d(stored), first)
            return block[0] if single else block
        return self._read(index, None)

    def _read(self, index: Any, first: int | None) -> np.ndarray:
        dataset = self._dataset()
        start = 0
        try:
            if isinstance(index, slice):
                start = index.indices(dataset.shape[0])[0]
                block = dataset[index]
            elif isinstance(index, (int, np.integer)):
                start = int(index) % dataset.shape[0]
                block = dataset[int(index)][None]
            else:
                # h5py needs increasing unique indices: read sorted, then restore the order.
                wanted = np.asarray(index).reshape(-1)
                if wanted.dtype == bool:
                    wanted = np.flatnonzero(wanted)
                wanted = np.where(wanted < 0, wanted + dataset.shape[0], wanted)
                unique, inverse = np.unique(wanted, return_inverse=True)
                block = dataset[unique][inverse] if unique.size else np.empty((0, *dataset.shape[1:]))
        except (OSError, ValueError, IndexError) as exc:
            raise ScanFileError(
                f"cannot read patterns {index!r} ({exc}); is the file truncated?",
                source=self.path,
                key=self.key,
            ) from None
        block = np.asarray(block)
        if self.bad_pixels is not None:
            block = np.where(self.bad_pixels, 0, block)
        check_intensities(
            block, source=self.path, key=self.key, first_index=start if first is None else first
        )
        block = block.astype(np.float32, copy=False)
        return block[0] if isinstance(index, (int, np.integer)) else block

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[:]
        return data if dtype is None else data.astype(dtype)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return f"HDF5Patterns({self.path!r}, {self.key!r}, shape={self.shape})"


#: Patterns converted to counts at a time (bounds the float64 intermediates).
_CONVERT_CHUNK = 256


def stored_to_counts(stored: np.ndarray, values: str, counts_scale: float | None = None) -> np.ndarray:
    """Counts (float32) from stored diffraction values, ``_CONVERT_CHUNK`` patterns at a time.

    Parameters
    ----------
    stored : numpy.ndarray
        ``(n, N, N)`` stored values, already checked (finite, non-negative).
    values : {"amplitudes", "counts"}
        What is stored: amplitudes are squared, counts taken as they are.
    counts_scale : float, optional
        None: the (squared) values are whole counts and are rounded; else the factor from
        squared normalised amplitudes to counts.
    """
    counts = np.empty(stored.shape, dtype=np.float32)
    for start in range(0, len(stored), _CONVERT_CHUNK):  # float64 work on a chunk, not the block
        part = stored[start : start + _CONVERT_CHUNK]
        # float64: uint16 squares overflow
        intensity = part.astype(np.float64) if values == "counts" else np.square(part, dtype=np.float64)
        counts[start : start + _CONVERT_CHUNK] = (
            np.rint(intensity) if counts_scale is None else intensity * counts_scale
        )
    return counts


class MappedPatterns:
    """Diffraction data in an uncompressed NPZ member, memory-mapped, served as counts.

    ``np.savez`` stores members uncompressed, so the ``.npy`` data of a member lie contiguous
    in the archive and can be mapped like a plain ``.npy`` file: only the patterns asked for
    are read, and the operating system may drop them again.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    key : str
        The member's key (for messages).
    offset : int
        Byte offset of the member's array data in the file.
    stored_shape : tuple of int
        Shape as stored: ``(n, N, N)``, or the legacy ``(N, N, n)`` with ``legacy_layout``.
    dtype : numpy.dtype
        Stored dtype (real numeric).
    legacy_layout : bool
        True for the pattern-last ``(N, N, n)`` layout.
    values : {"amplitudes", "counts"}
        What the member holds: amplitudes (squared on reading) or counts.
    counts_scale : float, optional
        None when the (squared) values are whole counts (they are rounded); else the factor
        from squared normalised amplitudes to counts.
    bad_pixels : numpy.ndarray, optional
        Bool ``(N, N)``, True where a detector pixel is bad: zeroed before the checks.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        key: str,
        offset: int,
        stored_shape: tuple[int, ...],
        dtype: np.dtype,
        *,
        legacy_layout: bool = False,
        values: str = "amplitudes",
        counts_scale: float | None = None,
        bad_pixels: np.ndarray | None = None,
    ):
        if values not in ("amplitudes", "counts"):
            raise ValueError(f"values must be 'amplitudes' or 'counts', got {values!r}")
        self.path = os.fspath(path)
        self.key = key
        self.offset = int(offset)
        self.stored_shape = tuple(int(s) for s in stored_shape)
        self.stored_dtype = np.dtype(dtype)
        self.legacy_layout = legacy_layout
        self.values = values
        self.counts_scale = counts_scale
        self.bad_pixels = None if bad_pixels is None else np.asarray(bad_pixels, dtype=bool)
        n_axis = 2 if legacy_layout else 0
        side = self.stored_shape[0] if legacy_layout else self.stored_shape[1]
        self.shape: tuple[int, int, int] = (self.stored_shape[n_axis], side, side)
        self.dtype = np.dtype(np.float32)
        self._array: np.ndarray | None = None
        self._pid: int | None = None

    def stored(self) -> np.ndarray:
        """The stored values as a read-only ``(n, N, N)`` view of the mapped file."""
        if self._array is None or self._pid != os.getpid():
            try:
                mapped = np.memmap(
                    self.path, dtype=self.stored_dtype, mode="r", offset=self.offset, shape=self.stored_shape
                )
            except (OSError, ValueError) as exc:
                raise ScanFileError(f"cannot map ({exc})", source=self.path, key=self.key) from None
            self._mapping = getattr(mapped, "_mmap", None)
            self._array = np.moveaxis(mapped, 2, 0) if self.legacy_layout else mapped
            self._pid = os.getpid()
        return self._array

    def release(self) -> None:
        """Drop the mapped pages from this process (they stay in the OS page cache).

        Pages of a file mapping count in the resident memory of the process that touched
        them; releasing them after each copy keeps it flat however much of the scan is read.
        """
        if self._mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._mapping.madvise(mmap.MADV_DONTNEED)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        stored = self.stored()
        first = 0
        if isinstance(index, slice):
            first = index.indices(self.shape[0])[0]
        elif isinstance(index, (int, np.integer)):
            first = int(index) % self.shape[0]
        block = np.array(stored[index])  # a copy: the mapping is released below
        self.release()
        single = block.ndim == 2
        if single:
            block = block[None]
        if self.bad_pixels is not None:
            block = np.where(self.bad_pixels, 0, block)
        check_intensities(block, source=self.path, key=self.key, first_index=first)
        counts = stored_to_counts(block, self.values, self.counts_scale)
        return counts[0] if single else counts

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[:]
        return data if dtype is None else data.astype(dtype)

    def close(self) -> None:
        self._array = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        state["_mapping"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return f"MappedPatterns({self.path!r}, {self.key!r}, shape={self.shape})"
