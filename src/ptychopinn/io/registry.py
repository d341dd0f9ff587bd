"""The registry of scan file formats: one module per format registers itself here.

A format module ends with::

    register_format(ScanFormat(name="mine", detect=..., read=..., contents=...))

and :func:`load_formats` imports every module of :mod:`ptychopinn.io`, so a new format is one
new module (nothing else to edit): :func:`~ptychopinn.io.formats.read_scan`,
:func:`~ptychopinn.io.formats.detect_format`, ``inspect`` and every command pick it up.
Detection runs in ``order`` (lowest first) and looks at the content, not the name, except for
formats that are described by their name (scan descriptions).

This module depends on nothing else in the package.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scan import Scan

#: one entry of a file's contents listing: (name, shape, dtype or a note)
ContentsEntry = tuple[str, tuple[int, ...], str]


@dataclass(frozen=True)
class ScanFormat:
    """A scan file format: how to recognise, read, list and (optionally) write it.

    Attributes
    ----------
    name : str
        Short name (``npz``, ``cxi``, ...): what :func:`detect_format` returns and ``inspect``
        reports.
    description : str
        One line for help texts and docs.
    detect : callable
        ``detect(path, head) -> bool``: ``path`` a str (a file or a directory), ``head`` its
        first 8 bytes (``b""`` for a directory). May raise
        :class:`~ptychopinn.io.errors.ScanFileError` for a file that is of this format but
        unusable (naming what is wrong).
    read : callable
        ``read(path, *, photons_per_pattern=None, lazy=None, links_within_folder=False) -> Scan``;
        options a format has no use for are ignored.
    contents : callable
        ``contents(path) -> [(name, shape, dtype), ...]``: what the file holds, for ``inspect``
        (must not read the data).
    write : callable, optional
        ``write(scan, path)``, for formats a scan can be written in.
    suffixes : tuple of str
        File-name suffixes chosen for writing (``.npz``).
    order : int
        Detection order, lowest first (a more specific format before a more general one).
    """

    name: str
    description: str
    detect: Callable[[str, bytes], bool]
    read: Callable[..., Scan]
    contents: Callable[[str], list[ContentsEntry]]
    write: Callable[[Scan, Any], None] | None = None
    suffixes: tuple[str, ...] = ()
    order: int = 50


_FORMATS: dict[str, ScanFormat] = {}
_LOADED: list[bool] = []


def register_format(scan_format: ScanFormat) -> ScanFormat:
    """Register a format (its module calls this at import).

    Raises
    ------
    ValueError
        Its name, or one of its suffixes, is taken by another format.
    """
    if scan_format.name in _FORMATS and _FORMATS[scan_format.name] != scan_format:
        raise ValueError(f"scan format '{scan_format.name}' is registered twice")
    for other in _FORMATS.values():
        clash = set(other.suffixes) & set(scan_format.suffixes)
        if other.name != scan_format.name and clash:
            raise ValueError(f"suffix {sorted(clash)[0]} of '{scan_format.name}' is taken by '{other.name}'")
    _FORMATS[scan_format.name] = scan_format
    return scan_format


def load_formats() -> None:
    """Import every module of :mod:`ptychopinn.io` once (each registers its formats)."""
    if _LOADED:
        return
    package = __name__.rpartition(".")[0]
    path = [os.path.dirname(__file__)]
    for info in sorted(pkgutil.iter_modules(path), key=lambda module: module.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _LOADED.append(True)


def list_formats() -> tuple[ScanFormat, ...]:
    """Every registered format, in detection order."""
    load_formats()
    return tuple(sorted(_FORMATS.values(), key=lambda f: (f.order, f.name)))


def get_format(name: str) -> ScanFormat:
    """The format registered as ``name``.

    Raises
    ------
    ValueError
        No format has that name (the message lists the registered ones).
    """
    load_formats()
    try:
        return _FORMATS[name]
    except KeyError:
        known = ", ".join(f.name for f in list_formats())
        raise ValueError(f"unknown scan format {name!r}; known: {known}") from None
