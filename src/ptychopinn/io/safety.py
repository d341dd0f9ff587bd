"""Reading untrusted files: regular files only, nothing outside the input, sizes checked first.

Every reader of this package goes through these checks (``docs/reliability.md``):

- **Regular files only.** A named pipe, a device or a directory given as input is refused
  before it is opened (opening a pipe would block forever).
- **Nothing outside the input.** HDF5 can make a file read other files: *external links*,
  *external raw storage* (a dataset's bytes kept in another file, say ``/proc/self/environ``)
  and *virtual datasets* mapping other files. All three are refused by default, before any
  data is read, naming the dataset and its target. ``links_within_folder=True`` admits
  targets that are regular files inside the input's own folder (a detector's master file
  linking its data files), and nothing else.
- **Sizes before allocation.** An array is read whole only when its declared size fits
  :attr:`ReadLimits.max_array_bytes` and the file really holds its data: a header declaring
  40000 x 40000 values over a few stored bytes (never written, or compressed more than
  :attr:`ReadLimits.max_expansion` times) is refused; the same rule bounds zip members.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScanFileError, ScanValidationError

#: the first 8 bytes of every HDF5 file
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

_GiB = 1024**3


@dataclass(frozen=True)
class ReadLimits:
    """What a reader may allocate for one array read whole.

    Attributes
    ----------
    max_array_bytes : int
        Largest declared size (bytes) of one array loaded into memory (default 4 GiB).
        Diffraction data read lazily (HDF5, uncompressed NPZ) are read block by block and
        are not bound by it.
    max_expansion : float
        Largest ratio of declared size to the bytes the file stores for it (default 200:
        above what deflate can reach, so only unwritten or crafted data exceed it).
    free_bytes : int
        Arrays up to this size are exempt from the expansion rule (default 64 MiB).
    """

    max_array_bytes: int = 4 * _GiB
    max_expansion: float = 200.0
    free_bytes: int = 64 * 1024**2

    def check(self, declared: float, stored: float | None, *, source: str, key: str, what: str) -> None:
        """Refuse ``declared`` bytes that exceed the budget or are not backed by ``stored`` bytes.

        Raises
        ------
        ScanFileError
            Naming the file, the key, the declared and the stored size.
        """
        if declared > self.max_array_bytes:
            raise ScanFileError(
                f"{what} declares {_size(declared)}, more than the {_size(self.max_array_bytes)} "
                "a reader may load at once",
                source=source,
                key=key,
            )
        self.check_stored(declared, stored, source=source, key=key, what=what)

    def check_stored(
        self, declared: float, stored: float | None, *, source: str, key: str, what: str
    ) -> None:
        """Refuse ``declared`` bytes not backed by the ``stored`` ones (for data read lazily too)."""
        if stored is not None and declared > self.free_bytes and declared > stored * self.max_expansion:
            raise ScanFileError(
                f"{what} declares {_size(declared)} but the file stores {_size(stored)} of it "
                f"(never written, or expanding more than {self.max_expansion:.0f}x): refused",
                source=source,
                key=key,
            )


DEFAULT_LIMITS = ReadLimits()


def _size(n_bytes: float) -> str:
    for unit, scale in (("GiB", _GiB), ("MiB", 1024**2), ("kiB", 1024)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} bytes"


def require_regular_file(path: str | os.PathLike, *, what: str = "input") -> str:
    """``path`` as a string when it is a regular file (symbolic links followed); else an error.

    Raises
    ------
    ScanFileError
        The path is missing, or a directory, named pipe, socket or device.
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ScanFileError("no such file", source=path) from None
    except OSError as exc:
        raise ScanFileError(f"cannot be read ({exc.strerror or exc})", source=path) from None
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a named pipe"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise ScanFileError(f"is {kind}; the {what} must be a regular file", source=path)
    return path


def _target_inside(folder: Path, target: str, base: Path) -> bool:
    """True when ``target`` (relative to ``base``) is a regular file inside ``folder``."""
    resolved = (base / target).resolve()
    try:
        resolved.relative_to(folder)
    except ValueError:
        return False
    try:
        return stat.S_ISREG(os.stat(resolved).st_mode)
    except OSError:
        return False


def check_hdf5_stays_inside(handle: Any, path: str, *, links_within_folder: bool = False) -> None:
    """Refuse external links, external raw storage and virtual datasets in an open HDF5 file.

    Walks every link of the file without following external links (so nothing outside the
    file is opened). ``links_within_folder`` admits targets that are regular files inside
    the folder holding ``path``.

    Raises
    ------
    ScanValidationError
        Naming the dataset (or link) and the file it points at.
    """

    folder = Path(path).resolve().parent

    def allowed(target: str) -> bool:
        return links_within_folder and _target_inside(folder, target, folder)

    links: list[tuple[str, Any]] = []
    try:
        # collect first: h5py's visit holds a lock, so nothing may be raised or opened inside it
        handle.visititems_links(lambda name, link: links.append((name, link)))
        for name, link in links:
            problem = _leaves_the_file(handle, name, link, allowed)
            if problem:
                raise ScanValidationError(problem, source=path, key=name)
    except (ScanValidationError, ScanFileError):
        raise
    except (RuntimeError, OSError, KeyError, ValueError, TypeError, SystemError) as exc:
        raise ScanFileError(
            f"cannot walk the file's structure ({exc}); is it corrupt?", source=path
        ) from None


def _leaves_the_file(handle: Any, name: str, link: Any, allowed: Any) -> str | None:
    """Why the object at ``name`` would make HDF5 read another file (None when it would not)."""
    import h5py

    if isinstance(link, h5py.ExternalLink):
        if allowed(link.filename):
            return None
        return (
            f"is an HDF5 external link to '{link.filename}:{link.path}'; files are read only from "
            "themselves (links to regular files inside the input's folder can be allowed)"
        )
    if not isinstance(link, h5py.HardLink):
        return None  # soft links point inside the file; their targets are visited themselves
    item = handle.get(name)
    if not isinstance(item, h5py.Dataset):
        return None
    if item.external:
        targets = sorted({entry[0] for entry in item.external})
        if not all(allowed(t) for t in targets):
            return f"keeps its data in another file ({', '.join(map(repr, targets))}: HDF5 external storage)"
    if item.is_virtual:
        targets = sorted({source.file_name for source in item.virtual_sources()})
        outside = [t for t in targets if t != "." and not allowed(t)]
        if outside:
            return f"is a virtual dataset mapping other files ({', '.join(map(repr, outside))})"
    return None


def open_hdf5(path: str | os.PathLike, *, links_within_folder: bool = False) -> Any:
    """Open an HDF5 file for reading after the checks above; the caller closes it.

    Raises
    ------
    ScanFileError
        Not a regular file, or not readable as HDF5.
    ScanValidationError
        The file reads other files (external link, external storage, virtual dataset).
    """
    import h5py

    path = require_regular_file(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ScanFileError(f"not a readable HDF5 file ({exc}); is it truncated?", source=path) from None
    try:
        check_hdf5_stays_inside(handle, path, links_within_folder=links_within_folder)
    except BaseException:
        handle.close()
        raise
    return handle


def hdf5_dataset(handle: Any, key: str, path: str) -> Any:
    """The dataset at ``key``, refusing a group or anything else in its place.

    Raises
    ------
    ScanValidationError
        ``key`` is missing or is not a dataset.
    """
    import h5py

    try:
        item = handle.get(key)
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise ScanValidationError(f"cannot be opened ({exc})", source=path, key=key) from None
    if item is None:
        raise ScanValidationError("required dataset is missing", source=path, key=key)
    if not isinstance(item, h5py.Dataset):
        raise ScanValidationError(
            f"is a {type(item).__name__.lower()}, where a dataset belongs", source=path, key=key
        )
    return item


def read_hdf5_array(handle: Any, key: str, path: str, *, limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Read the dataset at ``key`` whole, after checking its declared size (see :class:`ReadLimits`).

    Strings and other non-numeric data are returned as numpy would, bounded alike.

    Raises
    ------
    ScanValidationError
        Missing key, or a group where a dataset belongs.
    ScanFileError
        Declared size over the budget or not backed by the file; unreadable data.
    """
    dataset = hdf5_dataset(handle, key, path)
    itemsize = dataset.dtype.itemsize or 1
    declared = float(np.prod(dataset.shape, dtype=np.float64)) * itemsize if dataset.shape else itemsize
    try:
        stored = float(dataset.id.get_storage_size())
    except (OSError, RuntimeError, ValueError):
        stored = 0.0
    limits.check(declared, stored, source=path, key=key, what=f"shape {dataset.shape} of {dataset.dtype}")
    try:
        return np.asarray(dataset[()])
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise ScanFileError(f"cannot be read ({exc}); is the file truncated?", source=path, key=key) from None


def check_zip_members(archive: Any, path: str, *, limits: ReadLimits = DEFAULT_LIMITS) -> None:
    """Refuse zip members whose inflated size is over budget or a bomb's (see :class:`ReadLimits`).

    Raises
    ------
    ScanFileError
        Naming the member, its inflated and its compressed size.
    """
    for info in archive.infolist():
        limits.check(
            float(info.file_size),
            float(info.compress_size),
            source=path,
            key=info.filename,
            what=f"zip member of {_size(info.compress_size)}",
        )


def read_npy_header(stream: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a ``.npy`` stream, leaving it at the data."""
    version = np.lib.format.read_magic(stream)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = reader(stream)
    return tuple(shape), dtype


def check_npy_header(
    stream: Any, available: int, *, source: str, key: str = "array", load_whole: bool = True
) -> None:
    """Refuse a ``.npy`` header declaring more bytes than the ``available`` ones after it.

    Leaves ``stream`` at its start again. A header claiming 10^12 values must fail here, not
    as a giant allocation inside numpy (which allocates before it reads). ``load_whole``: the
    array will be loaded whole, so :data:`DEFAULT_LIMITS` bound it too (not for NPZ members,
    which may be memory-mapped).

    Raises
    ------
    ScanFileError
        Unreadable header, or declared size larger than the data present.
    """
    start = stream.tell()
    try:
        shape, dtype = read_npy_header(stream)
        header = stream.tell() - start
    except (ValueError, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise ScanFileError(f"unreadable array header ({exc})", source=source, key=key) from None
    finally:
        stream.seek(start)
    if dtype.hasobject:
        return  # refused by the reader (no pickle)
    declared = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if declared > available - header:
        raise ScanFileError(
            f"header claims shape {tuple(shape)} of {dtype} ({_size(declared)}) but the file holds "
            f"{_size(max(0, available - header))}: corrupt or truncated",
            source=source,
            key=key,
        )
    if load_whole:
        DEFAULT_LIMITS.check(declared, None, source=source, key=key, what=f"shape {tuple(shape)} of {dtype}")


#: Largest configuration or scan-description file read, and its deepest nesting.
MAX_DOCUMENT_BYTES = 1024**2
MAX_DOCUMENT_DEPTH = 32


def load_document(path: str | os.PathLike, *, what: str = "file") -> Any:
    """Read a small YAML or JSON document (by suffix) with bounded size, nesting and no aliases.

    YAML anchors and aliases are refused (a few hundred bytes of nested aliases expand to
    billions of nodes), as is nesting deeper than :data:`MAX_DOCUMENT_DEPTH` or a file over
    :data:`MAX_DOCUMENT_BYTES`.

    Raises
    ------
    ValueError
        Naming the file and what is wrong.
    """
    import yaml

    path = os.fspath(path)
    try:
        require_regular_file(path, what=what)
    except ScanFileError as exc:
        raise ValueError(str(exc)) from None
    if os.path.getsize(path) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{path}: {_size(os.path.getsize(path))} is too large for a {what}")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as text ({exc})") from None
    is_json = Path(path).suffix.lower() == ".json"
    try:
        if is_json:
            values = json.loads(text)
        else:
            depth = 0
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                    raise ValueError("YAML anchors and aliases are not accepted")
                if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                    depth += 1
                    if depth > MAX_DOCUMENT_DEPTH:
                        raise ValueError(f"nested deeper than {MAX_DOCUMENT_DEPTH} levels")
                elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                    depth -= 1
            values = yaml.safe_load(text)
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to read") from None
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if is_json else "YAML"
        raise ValueError(f"{path}: not a valid {what} ({kind}): {exc}") from None
    if _depth(values) > MAX_DOCUMENT_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_DOCUMENT_DEPTH} levels")
    return values


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts, iteratively (no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def hdf5_contents(path: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every dataset of an HDF5 file: ``(name, shape, dtype)``, read from itself only."""
    import h5py

    entries: list[tuple[str, tuple[int, ...], str]] = []

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            entries.append(("/" + name, tuple(item.shape), str(item.dtype)))

    with open_hdf5(path) as handle:  # refuses links to other files before listing anything
        handle.visititems(visit)
    return entries
