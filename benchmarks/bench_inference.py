"""Inference benchmark: patterns per second, stitching included, and peak memory.

For each generator at N = 64 and 128 and several batch sizes, a fresh process builds the
network (untrained weights: throughput does not depend on their values), simulates a scan,
and times :func:`ptychopinn.workflows.predict_object` (grouping, normalisation, network,
overlap constraint, stitching) after one warm-up pass. Peak memory is the process's maximum
resident set size (CPU) or the peak CUDA allocation (GPU).

Usage::

    python benchmarks/bench_inference.py --device cpu --output benchmarks/results/inference_cpu.json
    python benchmarks/bench_inference.py --device cuda --patterns 20000 --batch-sizes 256 1024 4096

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict

from results_io import machine, write_results

GENERATORS = ("cnn", "fno", "hybrid")


def run_one(generator: str, size: int, batch: int, patterns: int, device: str, gridsize: int) -> dict:
    import numpy as np
    import torch

    from ptychopinn.config import ModelConfig, TrainingConfig
    from ptychopinn.models import PINNModule
    from ptychopinn.simulate import SimulationConfig, simulate_scan
    from ptychopinn.workflows import predict_object

    torch.manual_seed(0)
    scan = simulate_scan(SimulationConfig(pattern_size=size, n_positions=patterns, step_px=size / 8, seed=0))
    module = PINNModule(
        model=asdict(ModelConfig(generator=generator)),
        training=asdict(TrainingConfig()),
        channels=gridsize**2,
        size=size,
        input_scale=float(np.sqrt((size / 2) ** 2 / scan.total_counts().mean())),
        probe=torch.from_numpy(scan.probe_modes),
    )
    warm = scan.replace(
        diffraction=scan.diffraction[: min(patterns, 2 * batch)],
        positions=scan.positions[: min(patterns, 2 * batch)],
        scan_index=None,
    )
    predict_object(module, warm, gridsize=gridsize, batch_size=batch, device=device, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    predict_object(module, scan, gridsize=gridsize, batch_size=batch, device=device, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "generator": generator,
        "pattern_size": size,
        "batch_size": batch,
        "gridsize": gridsize,
        "patterns": patterns,
        "seconds": elapsed,
        "patterns_per_s": patterns / elapsed,
        "peak_mb": peak,
        "device": device,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=GENERATORS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument(
        "--patterns", type=int, default=1024, help="patterns per scan at N = 64 (a quarter at 128)"
    )
    parser.add_argument("--gridsize", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/inference_cpu.json")
    parser.add_argument("--_one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._one:
        generator, size, batch, patterns = args._one
        row = run_one(generator, int(size), int(batch), int(patterns), args.device, args.gridsize)
        print("RESULT " + json.dumps(row))
        return 0

    rows = []
    for generator in args.generators:
        for size in args.sizes:
            patterns = args.patterns if size <= 64 else max(64, args.patterns // 4)
            for batch in args.batch_sizes:
                command = [
                    sys.executable,
                    __file__,
                    "--_one",
                    generator,
                    str(size),
                    str(batch),
                    str(patterns),
                    "--device",
                    args.device,
                    "--gridsize",
                    str(args.gridsize),
                ]
                done = subprocess.run(command, capture_output=True, text=True)
                line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    print(done.stderr[-4000:], file=sys.stderr)
                    raise SystemExit(f"{generator} N={size} batch={batch} failed")
                rows.append(json.loads(line[len("RESULT ") :]))
                print(f"done: {generator} N={size} batch={batch}", file=sys.stderr)

    print(f"{'generator':<9} {'N':>4} {'batch':>6} {'patterns':>8} {'patterns/s':>11} {'peak MB':>8}")
    for r in rows:
        print(
            f"{r['generator']:<9} {r['pattern_size']:>4} {r['batch_size']:>6} {r['patterns']:>8} "
            f"{r['patterns_per_s']:>11.1f} {r['peak_mb']:>8.0f}"
        )

    report = {
        "benchmark": "inference",
        "machine": machine(),
        "gridsize": args.gridsize,
        "rows": rows,
    }
    output = write_results(args.output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
