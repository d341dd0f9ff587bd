"""Workflow: simulate a scan and write it to a file."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..common import progress_option
from ..io import Scan, format_for_output, read_scan, write_scan
from ..io.stream import StreamWriter
from ..options import Options, option
from ..simulate import SimulationConfig, simulate_scan


@dataclass(frozen=True)
class SimulateOptions(Options):
    """Simulate a ptychographic scan (ground truth included) and write it as NPZ or CXI, at
    once (``--output``) or frame by frame into a growing CXI file as a detector would
    (``--stream-to``; ``ptychopinn watch`` follows it). What is simulated: the flags below."""

    section = "simulate"
    output: str | None = option(
        None, "output file: .npz or .cxi (.h5, .hdf5)", flags=("--output", "-o"), path=True,
        exclusive="target", required=True, metavar="OUTPUT",
    )  # fmt: skip
    stream_to: str | None = option(
        None, "write the scan frame by frame into a growing CXI file at --rate, as a detector would "
        "(ptychopinn watch follows it)", flags=("--stream-to",), metavar="FILE", path=True,
        exclusive="target",
    )  # fmt: skip
    rate: float = option(
        100.0, "with --stream-to: frames per second", flags=("--rate",), metavar="HZ", minimum=0.0,
        exclusive_minimum=True,
    )  # fmt: skip
    block: int = option(
        1, "with --stream-to: frames per write", flags=("--block",), metavar="FRAMES", minimum=1
    )
    progress: bool | None = progress_option()

    def check(self) -> None:
        if (self.output is None) == (self.stream_to is None):
            raise ValueError("simulate: give one of --output and --stream-to")


def simulate(
    config: SimulationConfig, options: SimulateOptions, *, log: Callable[[str], None] = print
) -> Scan | None:
    """Simulate a scan with ``config`` into ``options.output`` (returned, read back), or stream
    it into ``options.stream_to`` at ``options.rate`` (returns None)."""
    if options.stream_to is not None:
        stream_to_file(config, options.stream_to, rate_hz=options.rate, block=options.block, log=log)
        return None
    return simulate_to_file(config, options.output, progress=options.progress)


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
    _refuse_overwriting_the_probe(config, output)
    scan = simulate_scan(config, progress=progress, lazy=True)
    write_scan(scan, output)
    return read_scan(output)


def _refuse_overwriting_the_probe(config: SimulationConfig, output: str | os.PathLike) -> None:
    """An input is never written: the probe file may not be the output (nothing is lost)."""
    if config.probe in ("focused", "gaussian") or not os.path.exists(config.probe):
        return
    if os.path.exists(output) and os.path.samefile(config.probe, output):
        raise ValueError(
            f"{os.fspath(output)}: the output is the probe file (--probe); write the scan elsewhere"
        )


#: Scans up to this size are simulated whole before ``stream_to_file`` writes its first frame.
STREAM_PRESIMULATE_BYTES = 512 * 1024**2


def stream_to_file(
    config: SimulationConfig,
    path: str | os.PathLike,
    *,
    rate_hz: float,
    block: int = 1,
    log: Callable[[str], None] = print,
) -> int:
    """Simulate a scan and write it frame by frame into a growing CXI file at ``rate_hz``.

    The file follows :class:`~ptychopinn.io.stream.StreamWriter`'s layout (the one ``watch``
    follows): ``block`` frames per write, each write at its scheduled time (frame ``i`` is
    due ``i / rate_hz`` seconds after the first), the scan marked complete at the end. A
    writer that fails leaves the file unmarked, as a crashed detector writer would.

    Returns
    -------
    int
        Frames written.
    """
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"--rate {rate_hz!r}: must be a finite number of frames per second > 0")
    if block < 1:
        raise ValueError(f"--block {block!r}: must be >= 1")
    _refuse_overwriting_the_probe(config, path)
    # simulated before the first frame when it fits in memory, so that the writer, like a
    # detector, only writes (simulating blocks on the way took bursts of CPU from a reader
    # beside it); longer scans are simulated block by block as they are written
    n_bytes = config.n_positions * config.pattern_size**2 * 4
    scan = simulate_scan(config, progress=False, lazy=n_bytes > STREAM_PRESIMULATE_BYTES)
    started = time.perf_counter()
    with StreamWriter(path, probe=scan.probe, metadata=scan.metadata, obj=scan.object) as writer:
        for start, counts in scan.iter_batches(block):
            delay = started + start / rate_hz - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            writer.append(counts, scan.positions[start : start + len(counts)])
    elapsed = time.perf_counter() - started
    log(
        f"streamed {scan.n_patterns} frames to {path} in {elapsed:.1f} s "
        f"({scan.n_patterns / elapsed:.0f} frames/s)"
    )
    return scan.n_patterns
