"""``ptychopinn watch`` on the real measured scan (the Velociprobe Siemens star, N = 128).

As at a beamline: the probe comes from a blind ``reconstruct`` of an earlier scan (here the
same scan, ``--time-budget`` seconds), a network is trained with that probe (``train --probe``),
then the scan's frames arrive as ``.npz`` files in a folder (4 frames per file, at ``--rate``
frames per second, written atomically, the probe as ``probe.npy``, ``END`` at the end) while
``watch --refine`` follows the folder. Reports frames/s, latency, and the phase of the live
picture when the scan ends against the final ``reconstruct`` and against the blind
reconstruction (Pearson and SSIM after registration and the global phase; no ground truth).

Usage::

    python benchmarks/bench_live_real.py --output benchmarks/results/live_real.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from results_io import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "examples" / "velociprobe-siemens-star.yaml"


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ptychopinn", *args], check=True, cwd=ROOT, capture_output=True)


def write_frames(scan, folder: Path, probe: np.ndarray, rate: float, per_file: int = 4) -> None:
    np.save(folder / "probe.npy", probe)
    started = time.perf_counter()
    for start in range(0, scan.n_patterns, per_file):
        delay = started + start / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        stop = min(start + per_file, scan.n_patterns)
        target = folder / f"frame_{start:05d}.npz"
        tmp = folder / f".{target.name}.tmp"
        with open(tmp, "wb") as handle:
            counts = scan.get_patterns(np.arange(start, stop))
            np.savez(handle, diffraction=counts, positions=scan.positions[start:stop],
                     time=np.full(stop - start, time.time()))  # fmt: skip
        os.replace(tmp, target)
    (folder / "END").touch()


def phase_scores(a: np.ndarray, b: np.ndarray, well: np.ndarray) -> dict:
    from ptychopinn.evaluation import compare_objects

    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    comparison = compare_objects(a[:h, :w], b[:h, :w], well[:h, :w], remove_ramp=True)
    return {"phase_pearson": comparison.phase.pearson, "phase_ssim": comparison.phase.ssim}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="benchmarks/results/live_real.json")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--blind-seconds", type=float, default=60.0)
    parser.add_argument("--train-seconds", type=float, default=150.0)
    parser.add_argument("--final-seconds", type=float, default=60.0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from ptychopinn.io import read_scan
    from ptychopinn.workflows.live import WatchOptions, watch

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cli("reconstruct", str(REAL), "--output-dir", str(work / "blind"), "--refine-probe",
            "--probe-modes", "3", "--time-budget", str(args.blind_seconds), "--accelerator", "cpu",
            "--no-progress")  # fmt: skip
        cli("train", "--train-data", str(REAL), "--output-dir", str(work / "net"), "--probe",
            str(work / "blind" / "reconstruction.npz"), "--time-budget", str(args.train_seconds),
            "--accelerator", "cpu", "--no-progress", "--logger", "none")  # fmt: skip
        blind = np.load(work / "blind" / "reconstruction.npz")
        scan = read_scan(REAL)
        frames = work / "frames"
        frames.mkdir()
        writer = threading.Thread(target=write_frames, args=(scan, frames, blind["probe"], args.rate))
        options = WatchOptions(
            model=str(work / "net" / "model.zip"), refine=True, final_seconds=args.final_seconds,
            accelerator="cpu", update_seconds=5.0,
        )  # fmt: skip
        result: dict = {}
        watcher = threading.Thread(target=lambda: result.update(
            summary=watch(frames, work / "live", options, log=lambda line: None).summary))  # fmt: skip
        watcher.start()
        time.sleep(3.0)  # the network prepared, waiting for the folder's first file
        writer.start()
        writer.join()
        watcher.join()
        live = np.load(work / "live" / "reconstruction.npz")
        final = np.load(work / "live" / "final" / "reconstruction.npz")
        seen = live["weight_sum"]
        well = seen >= 0.5 * seen.max()
        summary = result["summary"]
        report = {
            "machine": machine(),
            "rate_hz": args.rate,
            "frames": summary["frames_reconstructed"],
            "frames_per_s": summary["frames_per_second"],
            "latency_median_s": summary["latency_median_s"],
            "latency_p99_s": summary["latency_p99_s"],
            "max_backlog": summary["max_backlog"],
            "refinement_rounds": summary["refinement_rounds"],
            "live_vs_final": phase_scores(live["object"], final["object"], well),
            "live_vs_blind": phase_scores(live["object"], blind["object"], well),
            "final_vs_blind": phase_scores(final["object"], blind["object"], well),
        }
    write_results(args.output, report)
    for key, value in report.items():
        if key != "machine":
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
