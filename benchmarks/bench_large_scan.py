"""Large scans: peak memory of each step against scan length, data read lazily (CXI or mapped NPZ).

For each scan length, in fresh processes (peak RSS is per process): simulate straight to CXI
(streamed), ``inspect`` it (reads every pattern), ``train`` on it for one epoch of a fixed
number of groups, and ``infer`` every pattern with the trained bundle (stitching included).
The file grows with the scan; the memory should not (beyond the object itself, which grows
with the scanned area: a small step keeps it small here).

Usage::

    python benchmarks/bench_large_scan.py --sizes 10000 30000 100000 --pattern-size 128
    python benchmarks/bench_large_scan.py --format npz --sizes 10000 30000 \
        --output benchmarks/results/large_scan_npz.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write_results


def measured(command: list[str]) -> dict:
    """Run ``python -m ptychopinn ...`` in a child; return its wall time and peak RSS (MB)."""
    wrapper = [sys.executable, "-c",
               "import resource, runpy, sys\n"
               "sys.argv = ['ptychopinn', *sys.argv[1:]]\n"
               "try:\n    runpy.run_module('ptychopinn', run_name='__main__')\n"
               "except SystemExit as exit:\n"
               "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
               "    print('PEAK_MB', peak, file=sys.stderr)\n"
               "    raise\n", *command]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(wrapper, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    peak = next(float(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_MB"))
    return {"seconds": wall, "peak_rss_mb": peak}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 30_000, 100_000])
    parser.add_argument("--pattern-size", type=int, default=128)
    parser.add_argument("--step", type=float, default=4.0)
    parser.add_argument("--train-groups", type=int, default=256)
    parser.add_argument("--format", choices=("cxi", "npz"), default="cxi", help="scan file format")
    parser.add_argument("--workdir", default=None, help="where the (large) scan files go")
    parser.add_argument(
        "--reuse-scans",
        action="store_true",
        help="use a scan file already in --workdir instead of simulating it (its row has no simulate step)",
    )
    parser.add_argument("--keep-scans", action="store_true", help="leave the scan files in --workdir")
    parser.add_argument("--output", default="benchmarks/results/large_scan.json")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_large_"))
    rows = []
    for n in args.sizes:
        scan = work / f"scan_{n}.{args.format}"
        row = {"patterns": n, "pattern_size": args.pattern_size, "format": args.format}
        if args.reuse_scans and scan.is_file():
            row["simulate"] = None
        else:
            row["simulate"] = measured(
                [
                    "simulate",
                    "--output",
                    str(scan),
                    "-N",
                    str(args.pattern_size),
                    "--n-positions",
                    str(n),
                    "--step",
                    str(args.step),
                    "--object",
                    "grf",
                    "--no-progress",
                ]
            )
        row["file_gb"] = scan.stat().st_size / 1e9
        row["inspect"] = measured(["inspect", str(scan)])
        row["train"] = measured(
            [
                "train",
                "--train-data",
                str(scan),
                "--output-dir",
                str(work / f"run_{n}"),
                "--n-groups",
                str(args.train_groups),
                "--epochs",
                "1",
                "--accelerator",
                "cpu",
                "--width",
                "4",
                "--depth",
                "1",
                "--modes",
                "4",
                "--logger",
                "none",
                "--no-progress-bar",
                "--batch-size",
                "16",
            ]
        )
        row["infer"] = measured(
            [
                "infer",
                "--model",
                str(work / f"run_{n}" / "model.zip"),
                "--data",
                str(scan),
                "--output-dir",
                str(work / f"infer_{n}"),
                "--accelerator",
                "cpu",
                "--inference-batch-size",
                "64",
                "--no-progress",
            ]
        )
        rows.append(row)
        if not args.keep_scans:
            scan.unlink()
        print(f"done: {n}", file=sys.stderr)
        write_report(args.output, rows)  # after every size: a long run keeps what it measured
    print(
        f"{'patterns':>9} {'file GB':>8} "
        + " ".join(
            f"{step + ' MB':>12} {step + ' s':>9}" for step in ("simulate", "inspect", "train", "infer")
        )
    )
    for r in rows:
        cells = " ".join(
            f"{r[s]['peak_rss_mb']:>12.0f} {r[s]['seconds']:>9.1f}" if r[s] else f"{'-':>12} {'-':>9}"
            for s in ("simulate", "inspect", "train", "infer")
        )
        print(f"{r['patterns']:>9} {r['file_gb']:>8.2f} {cells}")
    print(f"wrote {args.output}")
    return 0


def write_report(path: str, rows: list[dict]) -> None:
    report = {
        "benchmark": "large_scan",
        "machine": machine(),
        "rows": rows,
    }
    write_results(path, report)


if __name__ == "__main__":
    sys.exit(main())
