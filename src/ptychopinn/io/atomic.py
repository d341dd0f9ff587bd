"""Atomic file output: write to a temporary name beside the target, then rename.

A run killed mid-write leaves the previous file (or nothing) in place, never half a file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    The caller writes the file at the yielded path (any writer: numpy, h5py, matplotlib).

    On an exception the temporary file is removed and the target is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name, not a file: the writer creates it with the usual (umask) permissions.
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, values: object, *, indent: int = 2) -> Path:
    """Write a JSON summary atomically: the one writer of every ``*.json`` a command leaves.

    numpy scalars are written as numbers (``default=float``); returns the path.

    Examples
    --------
    >>> import json, tempfile, os
    >>> path = write_json(os.path.join(tempfile.mkdtemp(), "summary.json"), {"loss": 0.5})
    >>> json.loads(path.read_text())
    {'loss': 0.5}
    """
    import json

    return write_text(path, json.dumps(values, indent=indent, default=float))
