"""Training benchmark: throughput, peak memory and quality after a fixed wall-clock budget.

For each generator (cnn, fno, hybrid) and gridsize (1, 2), at N = 64, on one fixed simulated
scan, in a fresh process each (so peak memory is that run's alone):

- throughput: groups per second over the whole fit (optimizer steps x batch size / time);
- peak memory: the process's maximum resident set size;
- quality: the trained network's stitched reconstruction of the same scan, compared with the
  ground truth (phase and amplitude SSIM and Pearson correlation, after alignment).

Usage::

    python benchmarks/bench_training.py --budget 60 --output benchmarks/results/training.json

Prints a table and writes JSON. Figures depend on the machine: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write_results

GENERATORS = ("cnn", "fno", "hybrid")
GRIDSIZES = (1, 2)


def run_one(scan_path: str, generator: str, gridsize: int, budget: float, batch_size: int, lr: float) -> dict:
    import logging

    logging.disable(logging.WARNING)
    import torch

    from ptychopinn.config import load_run_config
    from ptychopinn.evaluation import compare_objects
    from ptychopinn.io import read_scan
    from ptychopinn.workflows import predict_object, train

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as out:
        config = load_run_config(
            overrides={
                "data": {"train_data": scan_path, "gridsize": gridsize},
                "model": {"generator": generator},
                "training": {"epochs": 10_000, "time_budget_s": budget},
                "execution": {
                    "accelerator": "cpu",
                    "logger": "none",
                    "progress_bar": False,
                    "batch_size": batch_size,
                    "learning_rate": lr,
                    "seed": 0,
                },
            }
        )
        result = train(config, out)
        steps = result.trainer.global_step
        wall = result.summary["wall_time_s"]
        scan = read_scan(scan_path)
        started = time.perf_counter()
        recon = predict_object(result.module, scan, gridsize=gridsize, batch_size=256, progress=False)
        infer_s = time.perf_counter() - started
        comparison = compare_objects(recon.object, scan.object, recon.coverage)
    return {
        "generator": generator,
        "gridsize": gridsize,
        "budget_s": budget,
        "epochs": result.trainer.current_epoch,
        "steps": steps,
        "groups_per_s": steps * batch_size / wall,
        "patterns_per_s": steps * batch_size * gridsize**2 / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in result.module.net.generator.parameters()),
        "final_train_loss": result.summary["metrics"].get("train_loss"),
        "phase_ssim": comparison.phase.ssim,
        "phase_pearson": comparison.phase.pearson,
        "amplitude_ssim": comparison.amplitude.ssim,
        "amplitude_pearson": comparison.amplitude.pearson,
        "inference_s": infer_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per run (default 60)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=GENERATORS)
    parser.add_argument("--gridsizes", nargs="+", type=int, default=list(GRIDSIZES))
    parser.add_argument("--n-positions", type=int, default=576)
    parser.add_argument("--output", default="benchmarks/results/training.json")
    parser.add_argument("--_one", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_scan", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._one:  # child process: one configuration
        generator, gridsize, budget = args._one
        row = run_one(
            args._scan, generator, int(gridsize), float(budget), args.batch_size, args.learning_rate
        )
        print("RESULT " + json.dumps(row))
        return 0

    from ptychopinn.io import write_scan
    from ptychopinn.simulate import SimulationConfig, simulate_scan

    workdir = Path(tempfile.mkdtemp(prefix="bench_training_"))
    scan_config = SimulationConfig(n_positions=args.n_positions, seed=0)
    scan_path = workdir / "scan.npz"
    write_scan(simulate_scan(scan_config), scan_path)
    rows = []
    for generator in args.generators:
        for gridsize in args.gridsizes:
            command = [
                sys.executable,
                __file__,
                "--_one",
                generator,
                str(gridsize),
                str(args.budget),
                "--_scan",
                str(scan_path),
                "--batch-size",
                str(args.batch_size),
                "--learning-rate",
                str(args.learning_rate),
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{generator} g={gridsize} failed")
            rows.append(json.loads(line[len("RESULT ") :]))
            print(f"done: {generator} g={gridsize}", file=sys.stderr)

    header = (
        f"{'generator':<9} {'g':>2} {'epochs':>6} {'groups/s':>9} {'patterns/s':>10} "
        f"{'peak MB':>8} {'params':>9} {'phase SSIM':>10} {'phase r':>8} "
        f"{'amp SSIM':>9} {'amp r':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['generator']:<9} {r['gridsize']:>2} {r['epochs']:>6} {r['groups_per_s']:>9.1f} "
            f"{r['patterns_per_s']:>10.1f} {r['peak_rss_mb']:>8.0f} {r['parameters']:>9d} "
            f"{r['phase_ssim']:>10.3f} {r['phase_pearson']:>8.3f} {r['amplitude_ssim']:>9.3f} "
            f"{r['amplitude_pearson']:>7.3f}"
        )
    report = {
        "benchmark": "training",
        "machine": machine(),
        "scan": {
            "pattern_size": scan_config.pattern_size,
            "n_positions": scan_config.n_positions,
            "photons_per_pattern": scan_config.photons_per_pattern,
            "object": scan_config.object_kind,
        },
        "budget_s": args.budget,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "rows": rows,
    }
    output = write_results(args.output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
