"""Scans read while they are written: a growing CXI file and a folder receiving frame files.

**A growing CXI file** (HDF5 single-writer/multiple-reader mode). :class:`StreamWriter`
writes the layout of :func:`~ptychopinn.io.cxi.write_cxi` with every per-frame dataset
growing along the pattern axis: the counts (``/entry_1/instrument_1/detector_1/data``), the
positions in object pixels (``/entry_1/ptychopinn/positions_px``, ``(y, x)``) and in metres
(``/entry_1/sample_1/geometry_1/translation``), and the time each frame was written
(``/entry_1/ptychopinn/timestamps``, seconds since the epoch). A frame is written counts first
and positions last, so a reader that takes ``min(len(data), len(positions))`` frames never
sees a half-written one. ``/entry_1/ptychopinn/complete`` turns 1 when the scan ends; the
finished file is an ordinary CXI scan (:func:`~ptychopinn.io.read_scan` reads it).
:class:`HDF5StreamSource` follows such a file (or any HDF5 file whose counts and positions
grow along their first axis: ``data_key``, ``positions_key``).

**A folder** receiving one ``.npz`` file per frame or per block (:class:`FolderSource`): each
holds ``diffraction`` (counts, ``(N, N)`` or ``(k, N, N)``) and ``positions`` (``(2,)`` or
``(k, 2)``, ``(y, x)`` object pixels), optionally ``time`` (when written). Files may arrive
in any order; one that cannot be read yet (still being written) is tried again at the next
poll, never dropped. A file named ``END`` marks the end of the scan.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..units import energy_ev_to_joules
from .errors import ScanFileError
from .safety import check_hdf5_stays_inside, check_zip_members, require_regular_file
from .scan import Scan, ScanMetadata

DATA_KEY = "entry_1/instrument_1/detector_1/data"
POSITIONS_KEY = "entry_1/ptychopinn/positions_px"
TIMES_KEY = "entry_1/ptychopinn/timestamps"
COMPLETE_KEY = "entry_1/ptychopinn/complete"
PROBE_KEY = "entry_1/instrument_1/source_1/illumination"
END_MARKER = "END"


@dataclass
class FrameBlock:
    """Frames read in one poll.

    Attributes
    ----------
    counts : numpy.ndarray
        float32 ``(k, N, N)`` photon counts.
    positions : numpy.ndarray
        float64 ``(k, 2)`` ``(y, x)`` object pixels.
    written_at : numpy.ndarray
        float64 ``(k,)``: when each frame was written (seconds since the epoch; the time it
        was first seen when the source does not say).
    """

    counts: np.ndarray
    positions: np.ndarray
    written_at: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)


class StreamWriter:
    """Writes a scan frame by frame into a CXI file that readers may follow while it grows.

    Parameters
    ----------
    path : path
        The file to create (refused if it exists, unless ``overwrite``).
    probe : numpy.ndarray
        Complex ``(N, N)`` probe, in counts.
    metadata : ScanMetadata
        Geometry (energy, detector distance and pixel size are needed: CXI stores metres).
    obj : numpy.ndarray, optional
        The true object (a simulation's), stored as ``/entry_1/image_1/data``.
    overwrite : bool
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        probe: np.ndarray,
        metadata: ScanMetadata,
        obj: np.ndarray | None = None,
        overwrite: bool = False,
    ):
        import h5py

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise ValueError(f"{self.path}: exists; the stream writer never replaces a file (--overwrite)")
        missing = [
            n
            for n in ("energy_ev", "detector_distance_m", "detector_pixel_size_m")
            if getattr(metadata, n) is None
        ]
        if missing:
            raise ValueError(f"{self.path}: a stream needs the geometry; missing {', '.join(missing)}")
        probe = np.asarray(probe, dtype=np.complex64)
        size = probe.shape[-1]
        self.pixel_size_m = (
            metadata.wavelength_m * metadata.detector_distance_m / (size * metadata.detector_pixel_size_m)
        )
        self.n_frames = 0
        handle = h5py.File(self.path, "w", libver="latest")
        self._handle = handle
        handle["cxi_version"] = 160
        detector = handle.create_group("entry_1/instrument_1/detector_1")
        self._data = detector.create_dataset(
            "data",
            shape=(0, size, size),
            maxshape=(None, size, size),
            dtype=np.float32,
            chunks=(1, size, size),
        )
        detector["distance"] = metadata.detector_distance_m
        detector["x_pixel_size"] = metadata.detector_pixel_size_m
        detector["y_pixel_size"] = metadata.detector_pixel_size_m
        handle.create_group("entry_1/data_1")["data"] = h5py.SoftLink(f"/{DATA_KEY}")
        source = handle.create_group("entry_1/instrument_1/source_1")
        source["energy"] = energy_ev_to_joules(metadata.energy_ev)
        source["illumination"] = probe
        geometry = handle.create_group("entry_1/sample_1/geometry_1")
        self._translation = geometry.create_dataset(
            "translation", shape=(0, 3), maxshape=(None, 3), dtype=np.float64, chunks=(256, 3)
        )
        if obj is not None:
            image = handle.create_group("entry_1/image_1")
            image["data"] = np.asarray(obj, dtype=np.complex64)
            image["data_type"] = "object"
            image["x_pixel_size"] = self.pixel_size_m
            image["y_pixel_size"] = self.pixel_size_m
        extras = handle.create_group("entry_1/ptychopinn")
        self._positions = extras.create_dataset(
            "positions_px", shape=(0, 2), maxshape=(None, 2), dtype=np.float64, chunks=(256, 2)
        )
        self._times = extras.create_dataset(
            "timestamps", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(256,)
        )
        self._complete = extras.create_dataset("complete", data=np.zeros(1, dtype=np.int8))
        extras.attrs["metadata_json"] = json.dumps({"version": 1, "metadata": metadata.to_dict()})
        handle.swmr_mode = True  # from here on readers may follow the file
        handle.flush()

    def append(self, counts: np.ndarray, positions: np.ndarray) -> None:
        """Append frames ``(k, N, N)`` (or one ``(N, N)``) at ``(k, 2)`` (or ``(2,)``) positions."""
        counts = np.asarray(counts, dtype=np.float32).reshape(-1, *self._data.shape[1:])
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        if len(counts) != len(positions):
            raise ValueError(f"{len(counts)} frames but {len(positions)} positions")
        start, stop = self.n_frames, self.n_frames + len(counts)
        self._data.resize(stop, axis=0)
        self._data[start:stop] = counts
        self._data.flush()  # counts first: a reader counts frames by their positions
        translation = np.zeros((len(positions), 3))
        translation[:, 0] = positions[:, 1] * self.pixel_size_m
        translation[:, 1] = positions[:, 0] * self.pixel_size_m
        for dataset, values in (
            (self._translation, translation),
            (self._times, np.full(len(counts), time.time())),
            (self._positions, positions),
        ):
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values
            dataset.flush()
        self.n_frames = stop

    def close(self, complete: bool = True) -> None:
        """Mark the scan complete (unless ``complete`` is False: a writer that failed) and close."""
        if self._handle is None:
            return
        if complete:
            self._complete[0] = 1
            self._complete.flush()
        self._handle.close()
        self._handle = None

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, kind, value, trace) -> None:
        self.close(complete=kind is None)


class HDF5StreamSource:
    """Follows an HDF5 file whose counts and positions grow along their first axis.

    Parameters
    ----------
    path : path
        The file (it must exist; the writer must have switched to SWMR mode).
    data_key, positions_key : str
        The counts ``(n, N, N)`` and the ``(n, 2)`` ``(y, x)`` positions in object pixels.
    """

    def __init__(
        self, path: str | os.PathLike, *, data_key: str = DATA_KEY, positions_key: str = POSITIONS_KEY
    ):
        import h5py

        self.path = require_regular_file(path)
        try:
            self._handle = h5py.File(self.path, "r", libver="latest", swmr=True)
        except OSError as exc:
            raise ScanFileError(
                f"cannot follow it as a growing HDF5 file ({exc}); is its writer in SWMR mode?",
                source=self.path,
            ) from None
        check_hdf5_stays_inside(self._handle, self.path)
        for key in (data_key, positions_key):
            if key not in self._handle:
                self._handle.close()
                raise ScanFileError(f"has no dataset '{key}'", source=self.path)
        self._data = self._handle[data_key]
        self._positions = self._handle[positions_key]
        if self._data.ndim != 3 or self._data.shape[1] != self._data.shape[2]:
            raise ScanFileError(f"'{data_key}' must be (n, N, N), got {self._data.shape}", source=self.path)
        if self._positions.ndim != 2 or self._positions.shape[1] != 2:
            raise ScanFileError(
                f"'{positions_key}' must be (n, 2), got {self._positions.shape}", source=self.path
            )
        self._times = self._handle[TIMES_KEY] if TIMES_KEY in self._handle else None
        self._complete = self._handle[COMPLETE_KEY] if COMPLETE_KEY in self._handle else None
        self.pattern_size = int(self._data.shape[-1])
        self.consumed = 0
        self._available = 0

    def _ready(self) -> int:
        for dataset in (self._data, self._positions):
            dataset.refresh()
        self._available = min(self._data.shape[0], self._positions.shape[0])
        return self._available

    def backlog(self) -> int:
        """Frames written and not read yet, as of the last look (no file access)."""
        return self._available - self.consumed

    def poll(self, max_frames: int) -> FrameBlock | None:
        """Up to ``max_frames`` new whole frames, or None when none has arrived."""
        ready = self._ready()
        stop = min(ready, self.consumed + max_frames)
        if stop <= self.consumed:
            return None
        seen = time.time()
        start, self.consumed = self.consumed, stop
        counts = np.asarray(self._data[start:stop], dtype=np.float32)
        positions = np.asarray(self._positions[start:stop], dtype=np.float64)
        written = np.full(stop - start, seen)
        if self._times is not None:
            self._times.refresh()
            if self._times.shape[0] >= stop:
                written = np.asarray(self._times[start:stop], dtype=np.float64)
        return FrameBlock(counts, positions, written)

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts and positions of frames ``start:stop`` already read once (for revisiting)."""
        stop = min(stop, self.consumed)
        counts = np.asarray(self._data[start:stop], dtype=np.float32)
        return counts, np.asarray(self._positions[start:stop], dtype=np.float64)

    def complete(self) -> bool:
        """True when the writer marked the scan complete (and every frame has been read)."""
        if self._complete is None:
            return False
        self._complete.refresh()
        return bool(self._complete[0]) and self._ready() == self.consumed

    def probe(self) -> np.ndarray | None:
        """The probe the file holds, if any."""
        return np.asarray(self._handle[PROBE_KEY]) if PROBE_KEY in self._handle else None

    def received_scan(self, probe: np.ndarray) -> Scan:
        """Every frame read so far as a :class:`Scan` (the file's probe and geometry if it has them)."""
        n = self.consumed
        metadata = ScanMetadata()
        extras = self._handle.get("entry_1/ptychopinn")
        if extras is not None and "metadata_json" in extras.attrs:
            values = json.loads(extras.attrs["metadata_json"]).get("metadata", {})
            metadata = ScanMetadata.from_dict(values, source=self.path)
        own = self.probe()
        obj = self._handle.get("entry_1/image_1/data")
        return Scan(
            diffraction=np.asarray(self._data[:n], dtype=np.float32),
            positions=np.asarray(self._positions[:n], dtype=np.float64),
            probe=np.asarray(probe if own is None else own, dtype=np.complex64),
            object=None if obj is None else np.asarray(obj, dtype=np.complex64),
            metadata=metadata,
            source=self.path,
        )

    def close(self) -> None:
        self._handle.close()


class FolderSource:
    """Follows a folder receiving ``.npz`` frame files (any order; see the module docs)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ScanFileError("is not a folder", source=str(self.folder))
        self.pattern_size: int | None = None
        self.consumed = 0
        self._done: set[str] = set()
        self._order: list[tuple[str, int]] = []  # files read, in order, with their frame counts
        self._backlog = 0
        self._waiting: dict[str, int] = {}  # files that could not be read yet, with their tries

    def _pending(self) -> list[Path]:
        files = [
            p for p in self.folder.glob("*.npz") if p.name not in self._done and not p.name.startswith(".")
        ]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def backlog(self) -> int:
        """Files arrived and not read yet, as of the last look (no folder listing)."""
        return self._backlog

    def unreadable(self) -> list[str]:
        """Files seen but not readable (yet): still being written, or damaged."""
        return sorted(self._waiting)

    def _load(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with zipfile.ZipFile(path) as archive:
            check_zip_members(archive, str(path))
        with np.load(path, allow_pickle=False) as arrays:
            counts = np.asarray(arrays["diffraction"], dtype=np.float32)
            positions = np.asarray(arrays["positions"], dtype=np.float64).reshape(-1, 2)
            written = np.asarray(arrays["time"], dtype=np.float64).reshape(-1) if "time" in arrays else None
        counts = counts.reshape(-1, *counts.shape[-2:])
        if len(counts) != len(positions) or counts.shape[1] != counts.shape[2]:
            raise ValueError(f"{path.name}: {counts.shape} counts at {positions.shape} positions")
        return counts, positions, written

    def poll(self, max_frames: int) -> FrameBlock | None:
        """Frames of the files that arrived (whole files, at least one, up to ``max_frames``)."""
        blocks = []
        total = 0
        seen = time.time()
        pending = self._pending()
        self._backlog = len(pending)
        for path in pending:
            if total >= max_frames:
                break
            try:
                counts, positions, written = self._load(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
                self._waiting[path.name] = self._waiting.get(path.name, 0) + 1  # retried next poll
                continue
            if self.pattern_size is None:
                self.pattern_size = counts.shape[-1]
            elif counts.shape[-1] != self.pattern_size:
                raise ScanFileError(
                    f"frames of {counts.shape[-1]} pixels after {self.pattern_size}-pixel ones",
                    source=str(path),
                )
            self._done.add(path.name)
            self._backlog -= 1
            self._order.append((path.name, len(counts)))
            self._waiting.pop(path.name, None)
            blocks.append((counts, positions, np.full(len(counts), seen) if written is None else written))
            total += len(counts)
        if not blocks:
            return None
        self.consumed += total
        return FrameBlock(*(np.concatenate(parts) for parts in zip(*blocks, strict=True)))

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts and positions of frames ``start:stop`` (in reading order), read again from their files."""
        counts, positions, first = [], [], 0
        for name, count in list(self._order):
            if first + count > start and first < stop:
                c, p, _ = self._load(self.folder / name)
                lo, hi = max(start - first, 0), min(stop - first, count)
                counts.append(c[lo:hi])
                positions.append(p[lo:hi])
            first += count
            if first >= stop:
                break
        if not counts:
            return np.zeros((0, 0, 0), np.float32), np.zeros((0, 2))
        return np.concatenate(counts), np.concatenate(positions)

    def complete(self) -> bool:
        """True once ``END`` exists and every frame file has been read."""
        return (self.folder / END_MARKER).exists() and not self._pending()

    def probe(self) -> np.ndarray | None:
        """``probe.npy`` of the folder, if any."""
        path = self.folder / "probe.npy"
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def received_scan(self, probe: np.ndarray) -> Scan:
        """Every frame read so far as a :class:`Scan` (``probe.npy`` of the folder if present)."""
        parts = [self._load(self.folder / name) for name, _ in self._order]
        own = self.probe()
        return Scan(
            diffraction=np.concatenate([p[0] for p in parts]),
            positions=np.concatenate([p[1] for p in parts]),
            probe=np.asarray(probe if own is None else own, dtype=np.complex64),
            source=str(self.folder),
        )

    def close(self) -> None:
        pass


def open_stream(path: str | os.PathLike, **keys: str) -> HDF5StreamSource | FolderSource:
    """The source for ``path``: a folder of frame files, or a growing HDF5 file."""
    return FolderSource(path) if Path(path).is_dir() else HDF5StreamSource(path, **keys)
