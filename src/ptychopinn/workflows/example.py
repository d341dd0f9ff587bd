"""The built-in example: what the README's first command runs.

Simulate a scan (written as NPZ and CXI, read back and inspected), reconstruct it in one
pass with the shipped pretrained network (when one was made for the scan's probe), train the
physics-informed network on it briefly, then ``reconstruct``: the trained network's prediction
polished by physics refinement; pictures, the loss curve and metrics against the ground truth.
"""

from __future__ import annotations

import logging
import os
import sys

from ..config import load_run_config
from ..io import read_scan
from ..refine import RefinementConfig
from ..simulate import SimulationConfig
from .bundles import inspect_file
from .figures import plot_scan_overview
from .inference import infer
from .pretrained import matching_bundle
from .reconstruction import reconstruct
from .results import ExampleResult
from .run_folder import claim_output_folder
from .simulation import simulate_to_file
from .training import train


def run_example(
    output_dir: str | os.PathLike,
    config: SimulationConfig | None = None,
    *,
    epochs: int = 10,
    gridsize: int = 2,
    refine_seconds: float = 20.0,
    overwrite: bool = False,
    log=print,
) -> ExampleResult:
    """Run the built-in example into ``output_dir`` and return what it wrote and found.

    ``config`` defaults to :class:`SimulationConfig` (576 patterns of 64 x 64). A folder
    holding an earlier run is refused unless ``overwrite`` (which removes that run's outputs).
    """
    config = config if config is not None else SimulationConfig()
    out = claim_output_folder(output_dir, command="example", overwrite=overwrite)
    result = ExampleResult(output_dir=out)
    log(
        f"[1/5] simulating {config.n_positions} patterns of {config.pattern_size}^2 "
        f"({config.object_kind} object, {config.probe} probe, "
        f"{config.photons_per_pattern:.3g} photons)"
    )
    for fmt in ("npz", "cxi"):
        path = out / f"scan.{fmt}"
        simulate_to_file(config, path)
        result.files[f"scan.{fmt}"] = path
    plot_scan_overview(read_scan(out / "scan.npz"), out / "scan_overview.png", title="simulated scan")
    result.files["scan_overview.png"] = out / "scan_overview.png"

    log("[2/5] inspecting what was written")
    for fmt in ("npz", "cxi"):
        report = inspect_file(result.files[f"scan.{fmt}"])
        result.reports.append(report)
        log(report.format_text())

    scan = read_scan(out / "scan.npz")
    pretrained = matching_bundle(scan.probe_modes)
    if pretrained is None:
        log("[3/5] no shipped pretrained network was made for this probe: single pass skipped")
    else:
        log(f"[3/5] single pass with the shipped pretrained network {pretrained.name} (never saw this scan)")
        result.single_pass = infer(pretrained, out / "scan.npz", out / "single-pass", progress=False)
        result.files.update({f"single-pass/{name}": path for name, path in result.single_pass.files.items()})
        _log_comparison(log, "single pass", result.single_pass.comparison)
        log(f"      {result.single_pass.patterns_per_second:.0f} patterns/s")

    log(f"[4/5] training the physics-informed network for {epochs} epochs (gridsize {gridsize})")
    run = load_run_config(overrides={
        "data": {"train_data": str(out / "scan.npz"), "gridsize": gridsize, "val_fraction": 0.1},
        "training": {"epochs": epochs},
        "execution": {"seed": config.seed, "progress_bar": sys.stderr.isatty()},
    })  # fmt: skip
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    trained = train(run, out / "training")
    result.files["model.zip"] = trained.bundle
    log(f"      wrote {trained.bundle} ({trained.summary['wall_time_s']:.0f} s)")

    log(f"[5/5] reconstructing: the network's prediction, then {refine_seconds:.0f} s of physics refinement")
    result.reconstruction = reconstruct(
        out / "scan.npz",
        out / "reconstruction",
        model=trained.bundle,
        refinement=RefinementConfig(time_budget_s=refine_seconds, seed=config.seed),
        progress=False,
        log=lambda message: log(f"      {message}"),
    )
    result.files.update(
        {f"reconstruction/{name}": path for name, path in result.reconstruction.files.items()}
    )
    for label, comparison in (
        ("network prediction", result.reconstruction.initial_comparison),
        ("after refinement", result.reconstruction.comparison),
    ):
        _log_comparison(log, label, comparison)
    log(
        f"done: pictures in {out / 'reconstruction'} (amplitude.png, phase.png, loss.png), "
        f"metrics in metrics.json, scan in {out}"
    )
    return result


def _log_comparison(log, label: str, comparison) -> None:
    if comparison is not None:
        log(
            f"      {label}: phase SSIM {comparison.phase.ssim:.3f} "
            f"(Pearson {comparison.phase.pearson:.3f}), amplitude SSIM "
            f"{comparison.amplitude.ssim:.3f} (Pearson {comparison.amplitude.pearson:.3f})"
        )
