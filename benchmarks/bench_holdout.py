"""The network on measured data (issue 17): train on part of the real scan, reconstruct the rest.

Runs the documented commands one after the other, as a user would:

1. ``reconstruct`` the whole real scan (blind probe, 3 modes): the pseudo-truth, and the
   refined probe the network's physics uses;
2. ``train`` on the scan with ``--holdout-region right:0.25`` (a quarter of the scan never
   seen) and ``--probe`` the refined probe, for ``--train-seconds``;
3. ``infer --held-out``: the held-out positions in one pass;
4. ``evaluate`` the single pass against the pseudo-truth (registration and ramp removal as
   ``evaluate`` does); also the single pass over the whole scan, for context.

Usage::

    python benchmarks/bench_holdout.py --train-seconds 1200 --output benchmarks/results/holdout.json

Prints a table, writes JSON and copies the comparison pictures to ``docs/images/``.
Needs ``../shared/data``. Time nothing else on the machine while it runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT / "examples" / "velociprobe-siemens-star.yaml"


def run(*args: str) -> float:
    """Run one ``ptychopinn`` command; its wall time (s)."""
    command = [sys.executable, "-m", "ptychopinn", *args]
    print("$ ptychopinn " + " ".join(args), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {done.stderr[-3000:]}")
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "", flush=True)
    return wall


def phase_metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    return {name: metrics[name] for name in ("phase", "amplitude") if name in metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=1200.0)
    parser.add_argument("--refine-seconds", type=float, default=240.0)
    parser.add_argument("--region", default="right:0.25")
    parser.add_argument("--gridsize", default="2")
    parser.add_argument("--work", help="keep the runs here (default: a temporary folder)")
    parser.add_argument(
        "--reuse-refined", action="store_true", help="keep WORK/refined from an earlier run (no step 1)"
    )
    parser.add_argument("--train-args", default="", help="extra train flags, e.g. '--learning-rate 3e-3'")
    parser.add_argument("--output", default="benchmarks/results/holdout.json")
    parser.add_argument("--images", default=str(ROOT / "docs" / "images"))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-holdout-"))
    work.mkdir(parents=True, exist_ok=True)
    refined, trained, held, whole = (work / name for name in ("refined", "trained", "held-out", "whole"))
    walls = {}
    if not (args.reuse_refined and (refined / "reconstruction.npz").is_file()):
        walls["reconstruct_s"] = run(
            "reconstruct", str(SCAN), "--output-dir", str(refined), "--refine-probe", "--probe-modes", "3",
            "--time-budget", str(args.refine_seconds), "--no-pretrained", "--no-progress", "--overwrite",
        )  # fmt: skip
    walls["train_s"] = run(
        "train", "--train-data", str(SCAN), "--output-dir", str(trained), "--probe",
        str(refined / "reconstruction.npz"), "--holdout-region", args.region, "--gridsize", args.gridsize,
        "--epochs", "100000", "--time-budget", str(args.train_seconds), "--logger", "csv",
        "--no-progress", "--overwrite", *args.train_args.split(),
    )  # fmt: skip
    model = str(trained / "model.zip")
    walls["infer_held_out_s"] = run(
        "infer", "--model", model, "--data", str(SCAN), "--output-dir", str(held), "--held-out",
        "--no-progress", "--overwrite",
    )  # fmt: skip
    walls["infer_whole_s"] = run(
        "infer",
        "--model",
        model,
        "--data",
        str(SCAN),
        "--output-dir",
        str(whole),
        "--no-progress",
        "--overwrite",
    )
    truth = str(refined / "reconstruction.npz")
    for folder in (held, whole):
        run("evaluate", "--reconstruction", str(folder), "--ground-truth", truth, "--remove-ramp",
            "--output-dir", str(folder / "eval"), "--overwrite")  # fmt: skip
    summary = json.loads((trained / "training_summary.json").read_text())
    inference = json.loads((held / "inference.json").read_text())
    report = {
        "machine": machine(),
        "scan": "APS Velociprobe Siemens star, 516 patterns of 128 x 128",
        "region": args.region,
        "train_args": args.train_args,
        "held_out_patterns": inference["patterns"],
        "epochs": summary["epochs_completed"],
        "walls_s": walls,
        "held_out_vs_refined": phase_metrics(held / "eval"),
        "whole_scan_vs_refined": phase_metrics(whole / "eval"),
        "held_out_patterns_per_s": inference["patterns_per_second"],
        "work": str(work),
    }
    write_results(args.output, report)
    images = Path(args.images)
    for folder, name in ((held, "holdout_real.png"), (whole, "holdout_real_whole.png")):
        if (folder / "eval" / "comparison.png").is_file():
            shutil.copy(folder / "eval" / "comparison.png", images / name)
    print(f"\n{'':<34}{'phase Pearson':>14}{'phase SSIM':>12}")
    for label, key in (("held-out single pass vs refined", "held_out_vs_refined"),
                       ("whole-scan single pass vs refined", "whole_scan_vs_refined")):  # fmt: skip
        phase = report[key]["phase"]
        print(f"{label:<34}{phase['pearson']:>14.3f}{phase['ssim']:>12.3f}")
    print(f"trained {report['epochs']} epochs in {walls['train_s']:.0f} s; wrote {args.output}")


if __name__ == "__main__":
    main()
