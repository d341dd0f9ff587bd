"""Format detection and the two entry points, :func:`read_scan` and :func:`write_scan`."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ScanFileError, ScanValidationError
from .registry import READ_OPTIONS, ScanFormat, get_format, list_formats
from .safety import require_regular_file
from .scan import Scan


def __getattr__(name: str):
    if name == "FORMATS":  # the registered names, for callers of the former constant
        return tuple(f.name for f in list_formats())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def detect_format(path: str | os.PathLike) -> str:
    """The name of the registered format a file or directory is in, from its content.

    Formats are asked in their detection order (:mod:`ptychopinn.io.registry`): ``arrays``
    (a scan description, by its ``.yaml``/``.yml``/``.json`` name), ``ptychodus`` (a directory
    holding ptychodus' ``diffraction.h5`` and ``product.h5``, or either file with its partner
    beside it), ``npz`` (a zip archive), ``cxi`` (any other HDF5 file).

    Raises
    ------
    ScanFileError
        Missing, empty or of an unknown format.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.bin")
    >>> with open(path, "wb") as handle:
    ...     np.savez(handle, x=np.zeros(1))
    >>> detect_format(path)  # the content decides, not the name
    'npz'
    """
    path = os.fspath(path)
    directory = os.path.isdir(path)
    head = b""
    if not directory:
        require_regular_file(path)
        with open(path, "rb") as handle:
            head = handle.read(8)
    for scan_format in list_formats():
        if scan_format.detect(path, head):
            return scan_format.name
    if directory:
        raise ScanFileError("is a directory without ptychodus' diffraction.h5 and product.h5", source=path)
    if not head:
        raise ScanFileError("file is empty", source=path)
    raise ScanFileError("unknown format: neither an NPZ (zip) archive nor an HDF5/CXI file", source=path)


def writable_format(path: str | os.PathLike) -> ScanFormat:
    """The registered format a scan is written in, from a file name's suffix.

    Raises
    ------
    ValueError
        No writable format claims the suffix (the message lists those that do).
    """
    suffix = Path(path).suffix.lower()
    suffixes = {s: f for f in list_formats() if f.write is not None for s in f.suffixes}
    if suffix not in suffixes:
        raise ValueError(
            f"{os.fspath(path)}: cannot tell the format from suffix '{suffix}'; "
            f"use one of {', '.join(sorted(suffixes))}"
        )
    return suffixes[suffix]


def format_for_output(path: str | os.PathLike) -> str:
    """Output format's name from a file name's suffix (``.npz``; ``.cxi``, ``.h5``, ``.hdf5``)."""
    return writable_format(path).name


def read_scan(
    path: str | os.PathLike,
    *,
    photons_per_pattern: float | None = None,
    lazy: bool | None = None,
    links_within_folder: bool = False,
) -> Scan:
    """Read a scan file of any supported format (detected from its content).

    Parameters
    ----------
    path : str or os.PathLike
        NPZ (PtychoPINN contract) or CXI/HDF5 file, ptychodus' layout (a directory with
        ``diffraction.h5`` and ``product.h5``, or one of them), or a scan description
        (``.yaml``/``.yml``/``.json``, ``format: arrays``) of arrays in their own conventions
        (:mod:`ptychopinn.io.arrays`).
    photons_per_pattern : float, optional
        For NPZ files holding normalised amplitudes: the mean photons per pattern.
    lazy : bool, optional
        NPZ only: memory-map the diffraction data (see :func:`~ptychopinn.io.npz.read_npz`).
        CXI/HDF5 data are always read lazily.
    links_within_folder : bool
        HDF5 only: admit external links, external storage and virtual datasets whose targets
        are regular files in the input's own folder (a detector's master file and its data
        files). Refused by default: a file is read only from itself
        (:mod:`ptychopinn.io.safety`).
    """
    scan_format = get_format(detect_format(path))
    given = {"photons_per_pattern": photons_per_pattern, "links_within_folder": links_within_folder or None}
    for name, value in given.items():
        if value is not None and name not in scan_format.options:
            raise ScanValidationError(
                f"{scan_format.name} files take no {READ_OPTIONS[name]}", source=os.fspath(path)
            )
    if lazy is not None and "lazy" in scan_format.options:  # a hint: other formats choose for themselves
        given["lazy"] = lazy
    return scan_format.read(os.fspath(path), **{k: v for k, v in given.items() if v is not None})


def write_scan(scan: Scan, path: str | os.PathLike) -> None:
    """Write a scan; the format follows the suffix (``.npz`` or ``.cxi``/``.h5``/``.hdf5``)."""
    writer = writable_format(path).write
    assert writer is not None  # writable_format returns writable formats only
    writer(scan, path)
