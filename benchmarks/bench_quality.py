"""Quality benchmark: ptychopinn (with each generator) and pty-chi's solvers, side by side.

Simulates a fixed set of scans: several object kinds; photon counts from 1e4 to 1e9 per
pattern; overlap from high (step 8 px with a ~21 px probe) to none (step 24 px). On each:

- ``refine``: ``reconstruct`` from a flat object (physics refinement only);
- ``<generator>``: a network of that generator trained on the scan for ``--train-budget`` s,
  its prediction alone (``net``), then ``reconstruct --model`` from it;
- ``pty-chi lsqml`` / ``pty-chi rpie``: when ``--ptychi-python`` names a Python that has
  pty-chi (see ``benchmarks/ptychi_runner.py``), its solvers for the same time.

Every method gets the known probe and positions and the same refinement time. Quality: phase
and amplitude SSIM and phase FRC resolution against the truth (well-covered region, aligned).

Usage::

    python benchmarks/bench_quality.py --budget 10 --train-budget 15 \\
        --ptychi-python /tmp/ptychi-venv/bin/python --output benchmarks/results/quality.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, run_ptychi, write_results

SCANS = (  # (name, object kind, photons per pattern, step in pixels)
    ("natural 1e6 step8", "natural", 1e6, 8.0),
    ("lines 1e6 step8", "lines", 1e6, 8.0),
    ("grf 1e6 step8", "grf", 1e6, 8.0),
    ("dead_leaves 1e6 step8", "dead_leaves", 1e6, 8.0),
    ("natural 1e4 step8", "natural", 1e4, 8.0),
    ("natural 1e9 step8", "natural", 1e9, 8.0),
    ("natural 1e6 step16", "natural", 1e6, 16.0),
    ("natural 1e6 step24 (no overlap)", "natural", 1e6, 24.0),
)


def row(scan: str, method: str, comparison, seconds: float) -> dict:
    return {
        "scan": scan,
        "method": method,
        "phase_ssim": comparison.phase.ssim if comparison else None,
        "amplitude_ssim": comparison.amplitude.ssim if comparison else None,
        "phase_frc_px": comparison.phase.frc.resolution_px if comparison and comparison.phase.frc else None,
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=10.0, help="refinement seconds per method")
    parser.add_argument("--train-budget", type=float, default=15.0, help="network training seconds")
    parser.add_argument("--generators", nargs="*", default=["cnn", "fno", "hybrid"])
    parser.add_argument("--n-positions", type=int, default=256)
    parser.add_argument("--scans", type=int, default=len(SCANS), help="use the first K scans")
    parser.add_argument("--ptychi-python", help="a Python with pty-chi, to run its LSQML and rPIE")
    parser.add_argument("--output", default="benchmarks/results/quality.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    from ptychopinn.config import load_run_config
    from ptychopinn.io import read_scan, write_scan
    from ptychopinn.refine import RefinementConfig
    from ptychopinn.simulate import SimulationConfig, simulate_scan
    from ptychopinn.workflows import ReconstructOptions, predict_object, reconstruct, train
    from ptychopinn.workflows.evaluation import compare_to_truth

    work = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    rows = []
    for name, kind, photons, step in SCANS[: args.scans]:
        path = work / f"{name.split()[0]}_{photons:.0e}_{step:.0f}.npz"
        write_scan(
            simulate_scan(
                SimulationConfig(
                    object_kind=kind,
                    photons_per_pattern=photons,
                    step_px=step,
                    n_positions=args.n_positions,
                    seed=0,
                )
            ),
            path,
        )
        scan = read_scan(path)
        refinement = RefinementConfig(time_budget_s=args.budget)
        started = time.perf_counter()
        options = ReconstructOptions(refinement=refinement, progress=False)
        result = reconstruct(path, work / "out", options, log=lambda m: None)
        rows.append(row(name, "refine", result.comparison, time.perf_counter() - started))
        for generator in args.generators:
            started = time.perf_counter()
            run = load_run_config(overrides={
                "data": {"train_data": str(path)},
                "model": {"generator": generator},
                "training": {"epochs": 100_000, "time_budget_s": args.train_budget},
                "execution": {"accelerator": "cpu", "logger": "none", "progress_bar": False},
            })  # fmt: skip
            trained = train(run, work / f"train_{generator}")
            network = predict_object(trained.module, scan, gridsize=1, batch_size=64, progress=False)
            rows.append(
                row(
                    name,
                    f"{generator} (net)",
                    compare_to_truth(network.object, scan.object, network.weight_sum),
                    time.perf_counter() - started,
                )
            )
            trained_options = ReconstructOptions(model=trained.bundle, refinement=refinement, progress=False)
            result = reconstruct(path, work / "out", trained_options, log=lambda m: None)
            rows.append(row(name, f"{generator} + refine", result.comparison, time.perf_counter() - started))
        if args.ptychi_python:
            for algorithm in ("lsqml", "rpie"):
                out = work / f"ptychi_{algorithm}.json"
                started = time.perf_counter()
                done = run_ptychi(args.ptychi_python, path, algorithm, args.budget, out)
                if done.returncode != 0:  # record the failure, keep benchmarking
                    rows.append(
                        {
                            "scan": name,
                            "method": f"pty-chi {algorithm}",
                            "phase_ssim": None,
                            "amplitude_ssim": None,
                            "phase_frc_px": None,
                            "seconds": time.perf_counter() - started,
                            "error": done.stderr[-2000:],
                        }
                    )
                    continue
                found = json.loads(out.read_text())
                rows.append(
                    {
                        "scan": name,
                        "method": f"pty-chi {algorithm}",
                        "phase_ssim": found["final_phase_ssim"],
                        "amplitude_ssim": found["final_amplitude_ssim"],
                        "phase_frc_px": None,
                        "seconds": time.perf_counter() - started,
                    }
                )
        print(f"done: {name}", file=sys.stderr)

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(f"{'scan':<32} {'method':<16} {'phase SSIM':>10} {'amp SSIM':>9} {'FRC px':>7} {'wall s':>7}")
    for r in rows:
        print(
            f"{r['scan']:<32} {r['method']:<16} {fmt(r['phase_ssim'], '.3f'):>10} "
            f"{fmt(r['amplitude_ssim'], '.3f'):>9} {fmt(r['phase_frc_px'], '.2f'):>7} {r['seconds']:>7.1f}"
        )
    report = {
        "benchmark": "quality",
        "machine": machine(),
        "budget_s": args.budget,
        "train_budget_s": args.train_budget,
        "n_positions": args.n_positions,
        "ptychi": bool(args.ptychi_python),
        "rows": rows,
    }
    output = write_results(args.output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
