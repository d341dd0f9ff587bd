"""What every benchmark records beside its figures: the machine, and the JSON file itself."""

from __future__ import annotations

import json
import os
import platform
import subprocess
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


def run_ptychi(
    python: str,
    scan: str | os.PathLike,
    algorithm: str,
    seconds: float,
    output: str | os.PathLike,
    threads: int | None = None,
) -> subprocess.CompletedProcess:
    """Run ``ptychi_runner.py`` in pty-chi's environment on a scan; its result lands in ``output``.

    The runner imports ptychopinn from this source tree; ``threads`` sets OMP_NUM_THREADS.
    The completed process is returned unchecked (its ``returncode`` and ``stderr`` say why
    it failed).
    """
    benchmarks = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(benchmarks.parent / "src")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [python, str(benchmarks / "ptychi_runner.py"), os.fspath(scan), "--algorithm", algorithm,
               "--seconds", str(seconds), "--output", os.fspath(output)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env)


def refine_with_snapshots(counts, positions, probe, config, mask=None):
    """``refine_object`` with the object kept after every epoch.

    Returns the result and ``[(seconds since the call, object), ...]``: the benchmarks score
    the snapshots afterwards, so scoring never counts as solver time.
    """
    import time

    from ptychopinn.refine import refine_object

    snapshots = []
    started = time.perf_counter()
    result = refine_object(
        counts, positions, probe, mask=mask, config=config,
        callback=lambda step: snapshots.append((time.perf_counter() - started, step.snapshot())),
    )  # fmt: skip
    return result, snapshots
