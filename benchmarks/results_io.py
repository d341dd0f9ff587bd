"""What every benchmark records beside its figures: the machine, and the JSON file itself."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from ptychopinn.io import atomic_path


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on (its figures mean nothing without it)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def write_results(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write ``report`` as indented JSON (atomically, folders created); return the path."""
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return output
