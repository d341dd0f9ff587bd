"""Refinement solvers at equal wall time on the example scan, at high and at low dose.

The built-in example scan (``SimulationConfig()``: 576 patterns of 64 x 64, known probe) at
1e6 and 1e4 photons per pattern, refined from a flat object by each solver for ``--seconds``;
the object after every epoch is scored afterwards (phase SSIM against the truth on the
well-covered region, as ``evaluate`` does), so scoring never counts as solver time. With
``--ptychi-python``, pty-chi LSQML and rPIE run on the same scans through
``benchmarks/ptychi_runner.py`` (set up as its own tests do), one after the other.

Usage::

    python benchmarks/bench_solvers.py --seconds 25 --ptychi-python /tmp/ptychi-venv/bin/python

Prints a table and writes ``benchmarks/results/solvers.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from results_io import machine, refine_with_snapshots, run_ptychi, write_results

REPO = Path(__file__).resolve().parents[1]
MARKS = (5.0, 10.0, 25.0)


def ours(scan, optimizer: str, seconds: float) -> dict:
    from ptychopinn.refine import RefinementConfig
    from ptychopinn.workflows.evaluation import compare_to_truth

    config = RefinementConfig(optimizer=optimizer, time_budget_s=seconds)
    result, snapshots = refine_with_snapshots(scan.diffraction, scan.positions, scan.probe, config)
    curve = [(t, compare_to_truth(o, scan.object, result.illumination).phase.ssim) for t, o in snapshots]
    return {"epochs": result.epochs, "curve": curve}


def at(curve: list, mark: float) -> float | None:
    """The score of the last snapshot taken by ``mark`` seconds."""
    done = [score for elapsed, score in curve if elapsed <= mark]
    return done[-1] if done else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--ptychi-python", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "solvers.json"))
    args = parser.parse_args()

    import torch

    from ptychopinn.io import write_scan
    from ptychopinn.simulate import SimulationConfig, simulate_scan

    torch.set_num_threads(args.threads)
    rows, work = [], Path(tempfile.mkdtemp(prefix="bench-solvers-"))
    for photons in (1e6, 1e4):
        scan = simulate_scan(SimulationConfig(photons_per_pattern=photons, seed=0))
        path = work / f"scan-{photons:g}.npz"
        write_scan(scan, path)
        for optimizer in ("preconditioned", "lbfgs"):
            run = ours(scan, optimizer, args.seconds)
            rows.append({"photons": photons, "solver": f"ptychopinn {optimizer}", **run})
            print(f"{photons:g} {optimizer}: {[at(run['curve'], m) for m in MARKS]}", flush=True)
        if args.ptychi_python:
            for algorithm in ("lsqml", "rpie"):
                out = work / f"{algorithm}-{photons:g}.json"
                done = run_ptychi(args.ptychi_python, path, algorithm, args.seconds, out, args.threads)
                if done.returncode != 0:
                    raise RuntimeError(f"pty-chi {algorithm} failed: {done.stderr[-2000:]}")
                found = json.loads(out.read_text())
                rows.append(
                    {
                        "photons": photons,
                        "solver": f"pty-chi {algorithm}",
                        "epochs": found["epochs"],
                        "curve": [(t, s) for t, s, _ in found["curve"]],
                        "diverged": found["diverged"],
                    }
                )
                print(f"{photons:g} {algorithm}: {[at(rows[-1]['curve'], m) for m in MARKS]}", flush=True)
    write_results(
        args.output, {"machine": machine(), "seconds": args.seconds, "threads": args.threads, "rows": rows}
    )
    print(
        f"\n{'photons':>8s}  {'solver':28s}{'epochs':>7s}" + "".join(f"{f'SSIM@{m:g}s':>11s}" for m in MARKS)
    )
    for row in rows:
        marks = "".join(
            f"{at(row['curve'], m):11.3f}" if at(row["curve"], m) is not None else f"{'-':>11s}"
            for m in MARKS
        )
        print(f"{row['photons']:8.0e}  {row['solver']:28s}{row['epochs']:7d}{marks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
