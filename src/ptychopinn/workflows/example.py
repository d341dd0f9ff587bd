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
from dataclasses import dataclass

from ..common import output_dir_option
from ..config import load_run_config
from ..io import read_scan
from ..options import Options, option
from ..refine import RefinementConfig
from ..simulate import SimulationConfig
from .bundles import inspect_file
from .figures import plot_scan_overview
from .inference import InferOptions, infer
from .pretrained import matching_bundle
from .reconstruction import ReconstructOptions, reconstruct
from .results import ExampleResult
from .run_folder import claim_output_folder
from .simulation import simulate_to_file
from .training import train


@dataclass(frozen=True)
class ExampleOptions(Options):
    """What the built-in example simulates, trains and refines."""

    section = "example"
    n_positions: int = option(
        SimulationConfig().n_positions, "number of scan positions", flags=("--n-positions", "--n-images"),
        minimum=1,
    )  # fmt: skip
    seed: int = option(SimulationConfig().seed, "random seed", flags=("--seed",), minimum=0)
    epochs: int = option(10, "training epochs", flags=("--epochs",), minimum=1)
    gridsize: int = option(2, "the trained network's gridsize", minimum=1, maximum=8)
    refine_seconds: float = option(
        20.0, "physics refinement time budget", flags=("--refine-seconds",), minimum=0.0,
        exclusive_minimum=True,
    )  # fmt: skip

    def simulation(self) -> SimulationConfig:
        """The simulated scan: the simulator's defaults with these positions and seed."""
        return SimulationConfig(n_positions=self.n_positions, seed=self.seed)


def run_example(
    output_dir: str | os.PathLike,
    options: ExampleOptions | None = None,
    *,
    overwrite: bool = False,
    log=print,
) -> ExampleResult:
    """Run the built-in example into ``output_dir`` and return what it wrote and found.

    The scan is :class:`SimulationConfig`'s default (576 patterns of 64 x 64) with the
    options' positions and seed. A folder holding an earlier run is refused unless
    ``overwrite`` (which removes that run's outputs).
    """
    options = options if options is not None else ExampleOptions()
    config = options.simulation()
    epochs, gridsize, refine_seconds = options.epochs, options.gridsize, options.refine_seconds
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
        quiet = InferOptions(progress=False)
        result.single_pass = infer(pretrained, out / "scan.npz", out / "single-pass", quiet)
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
    options = ReconstructOptions(
        model=os.fspath(trained.bundle), progress=False,
        refinement=RefinementConfig(time_budget_s=refine_seconds, seed=config.seed),
    )  # fmt: skip
    result.reconstruction = reconstruct(
        out / "scan.npz", out / "reconstruction", options, log=lambda message: log(f"      {message}")
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


@dataclass(frozen=True)
class ExampleInputs(Options):
    """Simulate a scan, write NPZ and CXI, inspect them, train the network briefly,
    reconstruct the scan and write pictures and metrics."""

    section = "example"
    output_dir: str = output_dir_option("folder for the outputs", default="example-output")
