"""The registry of scan file formats: one module per format registers itself here.

A format module ends with::

    register_format(ScanFormat(name="mine", detect=..., read=..., contents=...))

and the registry (:data:`ptychopinn.registry.SCAN_FORMATS`) imports every module of
:mod:`ptychopinn.io` on first use, so a new format is one
new module (nothing else to edit): :func:`~ptychopinn.io.formats.read_scan`,
:func:`~ptychopinn.io.formats.detect_format`, ``inspect`` and every command pick it up.
Detection runs in ``order`` (lowest first) and looks at the content, not the name, except for
formats that are described by their name (scan descriptions).

This module depends on nothing else in the package but the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..registry import SCAN_FORMATS

if TYPE_CHECKING:
    from .scan import Scan

#: The read options a format may take: name -> what it means (for messages).
READ_OPTIONS = {
    "photons_per_pattern": "photons_per_pattern (--nphotons), the photon scale of normalised amplitudes",
    "lazy": "lazy, memory-mapped reading",
    "links_within_folder": "links_within_folder, HDF5 links to files in the same folder",
}

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
        ``read(path, **options) -> Scan``, with the read options named in ``options`` (given
        only when the caller set them).
    contents : callable
        ``contents(path) -> [(name, shape, dtype), ...]``: what the file holds, for ``inspect``
        (must not read the data).
    write : callable, optional
        ``write(scan, path)``, for formats a scan can be written in.
    suffixes : tuple of str
        File-name suffixes chosen for writing (``.npz``).
    options : tuple of str
        The read options the format takes, of :data:`READ_OPTIONS`; one it does not take is
        refused when given (``--nphotons`` means nothing to a file holding counts).
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
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(READ_OPTIONS))
        if unknown:
            raise ValueError(
                f"scan format '{self.name}': unknown read option(s) {', '.join(unknown)} "
                f"(known: {', '.join(READ_OPTIONS)})"
            )


def register_format(scan_format: ScanFormat) -> ScanFormat:
    """Register a format in :data:`ptychopinn.registry.SCAN_FORMATS` (its module calls this).

    Raises
    ------
    ValueError
        Its name, or one of its suffixes, is taken by another format.
    """
    for name, other in SCAN_FORMATS._items.items():
        clash = set(other.suffixes) & set(scan_format.suffixes)
        if name != scan_format.name and clash:
            raise ValueError(f"suffix {sorted(clash)[0]} of '{scan_format.name}' is taken by '{other.name}'")
    return SCAN_FORMATS.register(scan_format.name, scan_format)


def load_formats() -> None:
    """Import every module of :mod:`ptychopinn.io` once (each registers its formats)."""
    SCAN_FORMATS.discover()


def list_formats() -> tuple[ScanFormat, ...]:
    """Every registered format, in detection order."""
    return tuple(sorted((f for _, f in SCAN_FORMATS.items()), key=lambda f: (f.order, f.name)))


def get_format(name: str) -> ScanFormat:
    """The format registered as ``name``.

    Raises
    ------
    ValueError
        No format has that name (the message lists the registered ones).
    """
    return SCAN_FORMATS.get(name)
