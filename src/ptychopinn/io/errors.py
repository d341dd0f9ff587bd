"""Errors raised at the data boundary: each names the file, the key and what is wrong."""

from __future__ import annotations


def _locate(message: str, source: str | None, key: str | None) -> str:
    where = ": ".join(part for part in (source, f"'{key}'" if key else None) if part)
    return f"{where}: {message}" if where else message


class ScanValidationError(ValueError):
    """Scan data that are readable but violate the data contract (shape, dtype, values).

    Attributes
    ----------
    source : str or None
        The file the data came from, when known.
    key : str or None
        The key (NPZ) or dataset path (HDF5) at fault, when known.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.reason = message
        super().__init__(_locate(message, source, key))


class ScanFileError(OSError):
    """A scan file that cannot be read at all: missing, truncated, not the format it claims."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.reason = message
        super().__init__(_locate(message, source, key))
