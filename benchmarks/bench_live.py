"""Live reconstruction (``ptychopinn watch``) on this machine: sustained rate, latency, quality.

For N = 64 (the shipped pretrained network for the simulator's focused probe) and N = 128 (an
untrained default network: the same arithmetic as a trained one):

1. **Sustained rate**: the whole scan already written (a burst), then ``watch`` works it off
   as fast as it can: frames per second, network alone and with ``--refine``.
2. **Latency at a detector's rate**: ``simulate --stream-to --rate R`` in its own process
   (one torch thread, as a detector writer beside the reconstruction) and ``watch`` following
   it: median and 99th-percentile latency (frame written to mosaic updated) and the largest
   backlog, network alone and with ``--refine``.
3. **Quality** (N = 64, with ``--refine``): the live mosaic when the scan ends against the
   final ``reconstruct`` (phase SSIM, after registration and the global phase), and both
   against the simulation's truth.

Usage::

    python benchmarks/bench_live.py --output benchmarks/results/live.json

Prints a table and writes JSON. Time nothing else on the machine while it runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from results_io import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "src" / "ptychopinn" / "pretrained" / "focused-n64.zip"


def untrained_bundle(size: int, probe: np.ndarray, folder: Path) -> Path:
    from ptychopinn.config import RunConfig
    from ptychopinn.models import build_module
    from ptychopinn.workflows import save_model_bundle

    torch.manual_seed(0)
    config = RunConfig()
    module = build_module(config, size=size, probe_modes=1, probe=torch.from_numpy(probe[None]))
    path = folder / f"untrained-n{size}.zip"
    save_model_bundle(module, path, config)
    return path


def scan_config(size: int, positions: int):
    from ptychopinn.simulate import SimulationConfig

    return SimulationConfig(pattern_size=size, n_positions=positions, step_px=size / 8, seed=0)


def burst_file(size: int, positions: int, folder: Path) -> tuple[Path, object]:
    from ptychopinn.io.stream import StreamWriter
    from ptychopinn.simulate import simulate_scan

    scan = simulate_scan(scan_config(size, positions), progress=False)
    path = folder / f"burst-n{size}.cxi"
    with StreamWriter(path, probe=scan.probe, metadata=scan.metadata, obj=scan.object) as writer:
        for start in range(0, scan.n_patterns, 256):
            writer.append(scan.diffraction[start : start + 256], scan.positions[start : start + 256])
    return path, scan


def run_watch(source: Path, bundle: Path, out: Path, **options) -> dict:
    from ptychopinn.workflows.live import WatchOptions, watch

    lines: list[str] = []
    settings = {"update_seconds": 5.0, "final_seconds": 0.0, "accelerator": "cpu", "idle_timeout_s": 20.0}
    settings.update(options)
    result = watch(source, out, WatchOptions(model=str(bundle), **settings), log=lines.append)
    return {**result.summary, "final": result.final, "output_dir": str(out)}


def streamed(size: int, positions: int, rate: float, bundle: Path, folder: Path, tag: str, **options) -> dict:
    """``watch`` started first (as at a beamline), then ``simulate --stream-to`` in its own process."""
    path = folder / f"stream-{tag}.cxi"
    result: dict = {}

    def follow() -> None:
        result.update(run_watch(path, bundle, folder / f"out-{tag}", **options))

    watcher = threading.Thread(target=follow)
    watcher.start()
    time.sleep(3.0)  # the network is loaded and prepared; watch waits for the file
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [
        sys.executable, "-m", "ptychopinn", "simulate", "--stream-to", str(path), "--rate", str(rate),
        "-N", str(size), "--n-positions", str(positions), "--step", str(size / 8), "--seed", "0",
    ]  # fmt: skip
    writer = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    watcher.join()
    # the writer's own line: "streamed N frames to F in T s (R frames/s)"
    said = writer.stdout.strip().splitlines()[-1] if writer.stdout.strip() else ""
    result["writer_frames_per_s"] = float(said.rsplit("(", 1)[1].split()[0]) if "(" in said else None
    return result


def live_vs_final(out: Path, truth: np.ndarray) -> dict:
    from ptychopinn.evaluation import compare_objects

    live = np.load(out / "reconstruction.npz")
    final = np.load(out / "final" / "reconstruction.npz")
    oy, ox = (int(v) for v in live["origin"])
    h, w = truth.shape
    frame = np.ones((h, w), np.complex64)
    seen = np.zeros((h, w), float)
    ys, xs = np.mgrid[0:h, 0:w]
    inside = (
        (ys - oy >= 0)
        & (ys - oy < live["object"].shape[0])
        & (xs - ox >= 0)
        & (xs - ox < live["object"].shape[1])
    )
    frame[inside] = live["object"][ys[inside] - oy, xs[inside] - ox]
    seen[inside] = live["weight_sum"][ys[inside] - oy, xs[inside] - ox]
    final_obj = final["object"][:h, :w]
    well = (seen >= 0.5 * seen.max()) & (final["weight_sum"][:h, :w] >= 0.5 * final["weight_sum"].max())
    scores = {}
    for name, a, b in (("live_vs_final", frame, final_obj), ("live_vs_truth", frame, truth),
                       ("final_vs_truth", final_obj, truth)):  # fmt: skip
        comparison = compare_objects(a, b, well)
        scores[name] = {"phase_ssim": comparison.phase.ssim, "amplitude_ssim": comparison.amplitude.ssim}
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="benchmarks/results/live.json")
    parser.add_argument("--rate", type=float, default=100.0, help="the detector rate of part 2 (Hz)")
    parser.add_argument("--final-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], choices=[64, 128])
    parser.add_argument("--refine-modes", nargs="+", default=["no", "yes"], choices=["no", "yes"],
                        help="run without and/or with --refine")
    parser.add_argument("--refine-window", type=int, default=None, help="watch --refine-window")
    parser.add_argument("--refine-seconds", type=float, default=None, help="watch's refinement rounds (s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"machine": machine(), "threads": args.threads, "rate_hz": args.rate, "rows": [],
                    "refine_window": args.refine_window, "refine_seconds": args.refine_seconds}  # fmt: skip
    from ptychopinn.simulate import simulate_scan

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size, positions, stream_positions in ((64, 2048, 2000), (128, 1024, 1000)):
            if size not in args.sizes:
                continue
            if size == 64:
                bundle = PRETRAINED
            else:
                probe = simulate_scan(scan_config(size, 4), progress=False).probe
                bundle = untrained_bundle(size, probe, folder)
            source, scan = burst_file(size, positions, folder)
            for refine in [mode == "yes" for mode in args.refine_modes]:
                tuning = {} if not refine else {
                    k: v for k, v in (("refine_window", args.refine_window),
                                      ("refine_seconds", args.refine_seconds)) if v is not None
                }  # fmt: skip
                tag = f"n{size}-{'refine' if refine else 'network'}"
                burst = run_watch(source, bundle, folder / f"burst-{tag}", refine=refine, **tuning)
                final = args.final_seconds if (size == 64 and refine) else 0.0
                rate = streamed(size, stream_positions, args.rate, bundle, folder, tag, refine=refine,
                                final_seconds=final, **tuning)  # fmt: skip
                row = {
                    "N": size,
                    "refine": refine,
                    "sustained_frames_per_s": burst["frames_reconstructed"] / burst["elapsed_s"],
                    "burst_frames": burst["frames_reconstructed"],
                    "stream_rate_hz": args.rate,
                    "stream_frames": rate["frames_reconstructed"],
                    "writer_frames_per_s": rate["writer_frames_per_s"],
                    "latency_median_s": rate["latency_median_s"],
                    "latency_p99_s": rate["latency_p99_s"],
                    "max_backlog": rate["max_backlog"],
                    "kept_up": rate["max_backlog"] < args.rate,  # less than a second behind
                    "refinement_rounds": rate["refinement_rounds"],
                }
                if size == 64 and refine:
                    from ptychopinn.io import read_scan

                    truth = read_scan(folder / f"stream-{tag}.cxi").object
                    row["quality"] = live_vs_final(Path(rate["output_dir"]), truth)
                report["rows"].append(row)
                print(
                    f"N={size:4d} refine={str(refine):5s}  sustained "
                    f"{row['sustained_frames_per_s']:8.1f} frames/s | "
                    f"at {args.rate:g} Hz (writer {row['writer_frames_per_s']} frames/s): latency median "
                    f"{row['latency_median_s']:.3f} s, p99 "
                    f"{row['latency_p99_s']:.3f} s, max backlog {row['max_backlog']}"
                    + (f" | quality {row['quality']}" if "quality" in row else ""),
                    flush=True,
                )
                write_results(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench_live"
    sys.exit(main())
