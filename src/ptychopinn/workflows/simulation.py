"""Workflow: simulate a scan and write it to a file."""

from __future__ import annotations

import os

from ..io import Scan, format_for_output, write_scan
from ..simulate import SimulationConfig, simulate_scan


def simulate_to_file(
    config: SimulationConfig, output: str | os.PathLike, *, progress: bool | None = None
) -> Scan:
    """Simulate a scan with ``config`` and write it (format from the suffix, atomically).

    The output name is checked before any work is done. CXI output is streamed: patterns are
    simulated block by block as they are written, so memory stays bounded for any scan length.
    """
    streamed = format_for_output(output) == "cxi"
    scan = simulate_scan(config, progress=progress, lazy=streamed)
    write_scan(scan, output)
    return scan
