"""The built-in example: what the README's first command runs.

Today: simulate a small scan, write it as NPZ and CXI, read both back, inspect them and draw
an overview. Training, reconstruction and the report join as those parts land.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..io import FileReport, inspect_file, read_scan
from ..simulate import SimulationConfig
from .figures import plot_scan_overview
from .simulation import simulate_to_file


@dataclass
class ExampleResult:
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    reports: list[FileReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports)


def run_example(
    output_dir: str | os.PathLike, config: SimulationConfig | None = None, *, log=print
) -> ExampleResult:
    """Run the built-in example into ``output_dir`` and return what it wrote and found.

    ``config`` defaults to :class:`SimulationConfig` (the example's small scan).
    """
    config = config if config is not None else SimulationConfig()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ExampleResult(output_dir=out)
    log(
        f"[1/3] simulating {config.n_positions} patterns of {config.pattern_size}^2 "
        f"({config.object_kind} object, {config.probe} probe, "
        f"{config.photons_per_pattern:.3g} photons)"
    )
    for fmt in ("npz", "cxi"):
        path = out / f"scan.{fmt}"
        simulate_to_file(config, path)
        result.files[fmt] = path
    log("[2/3] inspecting what was written")
    for fmt in ("npz", "cxi"):
        report = inspect_file(result.files[fmt])
        result.reports.append(report)
        log(report.format_text())
    log("[3/3] drawing the scan")
    figure = out / "scan_overview.png"
    plot_scan_overview(
        read_scan(result.files["npz"]), figure, title="simulated scan (ground truth)"
    )
    result.files["overview"] = figure
    log(f"done: wrote {', '.join(str(p) for p in result.files.values())}")
    return result
