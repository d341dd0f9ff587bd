"""Reconstruction benchmark: time to phase SSIM 0.95 with and without a trained network.

On the built-in example scan (``SimulationConfig()``: N = 64, 576 positions, 1e6 photons):

1. a network is trained (default settings, ``--train-budget`` seconds) on *another* scan of
   the same kind (seed 1), as a user would train one per beamline set-up;
2. ``reconstruct`` runs from a flat object and from that network's prediction, recording the
   object after every refinement epoch; the phase SSIM against the truth (on the
   well-covered region) of each snapshot gives the time to reach 0.95, counted from the
   start of ``reconstruct`` (reading the file and the network included);
3. the whole ``ptychopinn reconstruct`` process is timed for a fixed refinement budget, from
   launch to exit, and its metrics read back.

Where the optional ``ptychi`` package is importable, its LSQML would run on the same scan;
it is not installed in the CPU environment of this project (it needs torchvision), so the
script reports it as skipped.

Usage::

    python benchmarks/bench_reconstruct.py --train-budget 120 --refine-budget 30
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write_results

THRESHOLD = 0.95


def time_to_quality(scan_path: Path, out: Path, model: Path | None, budget: float) -> dict:
    from ptychopinn.io import read_scan
    from ptychopinn.refine import RefinementConfig
    from ptychopinn.workflows import ReconstructOptions, reconstruct
    from ptychopinn.workflows.evaluation import compare_to_truth

    truth = read_scan(scan_path).object
    snapshots: list[tuple[float, object]] = []
    started = time.perf_counter()

    def record(step) -> None:
        snapshots.append((time.perf_counter() - started, step.snapshot()))

    options = ReconstructOptions(
        model=model, use_pretrained=False, refinement=RefinementConfig(time_budget_s=budget), progress=False
    )
    result = reconstruct(scan_path, out, options, log=lambda message: None, callback=record)
    weight = result.refinement.illumination
    curve = []
    for elapsed, obj in snapshots:
        comparison = compare_to_truth(obj, truth, weight)
        curve.append((elapsed, comparison.phase.ssim, comparison.amplitude.ssim))
    reached = next((t for t, ssim, _ in curve if ssim >= THRESHOLD), None)
    network = result.initial_comparison
    return {
        "start": result.start,
        "seconds_to_phase_ssim_0.95": reached,
        "network_s": result.timings.get("network_s", 0.0),
        "network_phase_ssim": network.phase.ssim if network else None,
        "final_phase_ssim": result.comparison.phase.ssim,
        "final_amplitude_ssim": result.comparison.amplitude.ssim,
        "epochs": result.refinement.epochs,
        "curve": curve,
    }


def whole_process(scan_path: Path, out: Path, model: Path | None, budget: float) -> dict:
    command = [
        sys.executable,
        "-m",
        "ptychopinn",
        "reconstruct",
        str(scan_path),
        "--output-dir",
        str(out),
        "--time-budget",
        str(budget),
        "--no-progress",
    ]
    command += ["--model", str(model)] if model is not None else ["--no-pretrained"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "start": "model" if model else "constant",
        "refine_budget_s": budget,
        "process_wall_s": wall,
        "phase_ssim": metrics["phase"]["ssim"],
        "amplitude_ssim": metrics["amplitude"]["ssim"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-budget", type=float, default=120.0, help="network training seconds")
    parser.add_argument("--refine-budget", type=float, default=30.0, help="refinement seconds")
    parser.add_argument(
        "--process-budget", type=float, default=20.0, help="refinement seconds of the whole-process runs"
    )
    parser.add_argument("--output", default="benchmarks/results/reconstruct.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    from ptychopinn.config import load_run_config
    from ptychopinn.io import write_scan
    from ptychopinn.simulate import SimulationConfig, simulate_scan
    from ptychopinn.workflows import train

    work = Path(tempfile.mkdtemp(prefix="bench_reconstruct_"))
    scan_path, train_path = work / "scan.npz", work / "other_scan.npz"
    write_scan(simulate_scan(SimulationConfig(seed=0)), scan_path)
    write_scan(simulate_scan(SimulationConfig(seed=1)), train_path)
    print(
        f"training a network on another scan of the same kind for {args.train_budget:.0f} s", file=sys.stderr
    )
    run = load_run_config(overrides={
        "data": {"train_data": str(train_path)},
        "training": {"epochs": 100_000, "time_budget_s": args.train_budget},
        "execution": {"accelerator": "cpu", "logger": "none", "progress_bar": False},
    })  # fmt: skip
    bundle = train(run, work / "training").bundle

    rows = [
        time_to_quality(scan_path, work / f"rec_{name}", model, args.refine_budget)
        for name, model in (("constant", None), ("model", bundle))
    ]
    processes = [
        whole_process(scan_path, work / f"proc_{name}", model, args.process_budget)
        for name, model in (("constant", None), ("model", bundle))
    ]
    ptychi = "available" if importlib.util.find_spec("ptychi") else "not installed: skipped"

    print(f"{'start':<9} {'network SSIM':>12} {'t(SSIM>=0.95) s':>16} {'final phase SSIM':>17} {'epochs':>6}")
    for r in rows:
        reached = (
            f"{r['seconds_to_phase_ssim_0.95']:.1f}" if r["seconds_to_phase_ssim_0.95"] else "not reached"
        )
        network = f"{r['network_phase_ssim']:.3f}" if r["network_phase_ssim"] is not None else "-"
        print(f"{r['start']:<9} {network:>12} {reached:>16} {r['final_phase_ssim']:>17.3f} {r['epochs']:>6}")
    print(f"\nwhole process, refinement budget {args.process_budget:.0f} s:")
    for p in processes:
        print(
            f"  {p['start']:<9} wall {p['process_wall_s']:.1f} s, phase SSIM {p['phase_ssim']:.3f}, "
            f"amplitude SSIM {p['amplitude_ssim']:.3f}"
        )
    print(f"pty-chi LSQML: {ptychi}")
    report = {
        "benchmark": "reconstruct",
        "machine": machine(),
        "train_budget_s": args.train_budget,
        "refine_budget_s": args.refine_budget,
        "time_to_quality": rows,
        "whole_process": processes,
        "ptychi": ptychi,
    }
    output = write_results(args.output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
