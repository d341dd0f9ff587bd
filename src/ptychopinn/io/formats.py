"""Format detection and the two entry points, :func:`read_scan` and :func:`write_scan`."""

from __future__ import annotations

import os
from pathlib import Path

from .arrays import is_scan_description, read_arrays
from .cxi import read_cxi, write_cxi
from .errors import ScanFileError
from .npz import read_npz, write_npz
from .ptychodus import hdf5_kind, ptychodus_pair, read_ptychodus
from .safety import require_regular_file
from .scan import Scan

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FORMATS = ("npz", "cxi", "ptychodus")
_SUFFIXES = {".npz": "npz", ".cxi": "cxi", ".h5": "cxi", ".hdf5": "cxi"}


def detect_format(path: str | os.PathLike) -> str:
    """``"npz"``, ``"cxi"`` or ``"ptychodus"``, from the content (not the name).

    ``"ptychodus"``: a directory holding ptychodus' ``diffraction.h5`` and ``product.h5``, or
    either of those files with its partner beside it.

    Raises
    ------
    ScanFileError
        Missing, empty or of an unknown format.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if ptychodus_pair(path) is not None:
            return "ptychodus"
        raise ScanFileError("is a directory without ptychodus' diffraction.h5 and product.h5", source=path)
    require_regular_file(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(_ZIP_MAGIC) or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head == _HDF5_MAGIC:
        kind = hdf5_kind(path)
        if kind is not None and kind.startswith("ptychodus"):
            if ptychodus_pair(path) is None:
                partner = "product.h5" if kind == "ptychodus-diffraction" else "diffraction.h5"
                raise ScanFileError(
                    f"a ptychodus {kind[10:]} file without its {partner} beside it", source=path
                )
            return "ptychodus"
        return "cxi"
    if not head:
        raise ScanFileError("file is empty", source=path)
    raise ScanFileError("unknown format: neither an NPZ (zip) archive nor an HDF5/CXI file", source=path)


def format_for_output(path: str | os.PathLike) -> str:
    """Output format from a file name's suffix (``.npz``; ``.cxi``, ``.h5``, ``.hdf5``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"{os.fspath(path)}: cannot tell the format from suffix '{suffix}'; "
            f"use one of {', '.join(sorted(_SUFFIXES))}"
        )
    return _SUFFIXES[suffix]


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
    if is_scan_description(path):
        return read_arrays(path)
    fmt = detect_format(path)
    if fmt == "npz":
        return read_npz(path, photons_per_pattern=photons_per_pattern, lazy=lazy)
    if fmt == "ptychodus":
        return read_ptychodus(path, links_within_folder=links_within_folder)
    return read_cxi(path, links_within_folder=links_within_folder)


def write_scan(scan: Scan, path: str | os.PathLike) -> None:
    """Write a scan; the format follows the suffix (``.npz`` or ``.cxi``/``.h5``/``.hdf5``)."""
    if format_for_output(path) == "npz":
        write_npz(scan, path)
    else:
        write_cxi(scan, path)
