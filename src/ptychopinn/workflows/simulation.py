"""Workflow: simulate a scan and write it to a file."""

from __future__ import annotations

import os

from ..io import Scan, format_for_output, read_scan, write_scan
from ..simulate import SimulationConfig, simulate_scan


def simulate_to_file(
    config: SimulationConfig, output: str | os.PathLike, *, progress: bool | None = None
) -> Scan:
    """Simulate a scan with ``config`` and write it (format from the suffix, atomically).

    The output name is checked before any work is done. The output is streamed: patterns are
    simulated block by block as they are written, so memory stays bounded for any scan length.

    Returns
    -------
    Scan
        The scan as read back from ``output`` (lazily where the format allows), so that
        looking at its patterns reads the file instead of simulating them again.
    """
    format_for_output(output)  # a bad name fails before any work
    scan = simulate_scan(config, progress=progress, lazy=True)
    write_scan(scan, output)
    return read_scan(output)
