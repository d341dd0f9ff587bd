"""The real Velociprobe scan: ptychopinn's blind refinement against pty-chi LSQML, side by side.

Both start from the file's zone-plate probe guess as given (ours calibrates its power, LSQML
rescales it in its first epoch) and a flat object, and retrieve the probe with incoherent
modes; both use 2 threads, one after the other (never at the same time).

1. ``ptychopinn reconstruct examples/velociprobe-siemens-star.yaml --refine-probe
   --probe-modes 3 --time-budget B``: the whole process timed, launch to exit.
2. The same refinement in-process with the object kept after every epoch: the time at which
   its phase reaches Pearson 0.95 against the converged LSQML reconstruction (registered,
   global phase and linear ramp removed, on the region both illuminate well).
3. pty-chi LSQML, 100 epochs, 5 modes, as its own tests configure it
   (``benchmarks/ptychi_real.py``, run in the pty-chi environment given by ``--ptychi-python``).
4. Resolution without a truth: each method reconstructs the even and the odd positions apart
   (ours as many epochs as its full run, LSQML 100); the FRC of the two halves (1/2 bit).
5. The Poisson deviance of the data under each reconstruction against its noise floor.

Usage::

    python benchmarks/bench_real.py --budget 240 --ptychi-python /tmp/ptychi-venv/bin/python

Prints a table, writes ``benchmarks/results/real_scan.json`` and the side-by-side picture
``docs/images/real_scan.png``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from results_io import machine, refine_with_snapshots, write_results

REPO = Path(__file__).resolve().parents[1]
DESCRIPTION = REPO / "examples" / "velociprobe-siemens-star.yaml"
DATA = REPO.parent / "shared" / "data" / "velociprobe-siemens-star" / "siemens-star-small.npz.bz2"


def read_real_scan():
    from ptychopinn.io import read_scan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_scan(DESCRIPTION).load()


def to_our_frame(obj: np.ndarray, positions: np.ndarray, ours_positions: np.ndarray, shape) -> np.ndarray:
    """Resample an object from another frame onto ours, matching the same scan positions."""
    from scipy import ndimage

    offset = (positions - ours_positions).mean(axis=0)  # their pixel = ours + offset
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    coords = [rows + offset[0], cols + offset[1]]
    real = ndimage.map_coordinates(obj.real, coords, order=1, mode="constant")
    imag = ndimage.map_coordinates(obj.imag, coords, order=1, mode="constant")
    return (real + 1j * imag).astype(np.complex64)


def phase_agreement(estimate: np.ndarray, reference: np.ndarray, well: np.ndarray) -> dict:
    """Phase Pearson and SSIM after registration, global phase and linear ramp removal."""
    from ptychopinn.evaluation import compare_objects

    comparison = compare_objects(estimate, reference, well, remove_ramp=True)
    return {
        "phase_pearson": comparison.phase.pearson,
        "phase_ssim": comparison.phase.ssim,
        "amplitude_pearson": comparison.amplitude.pearson,
        "shift_px": list(comparison.shift_px),
    }


def half_frc(first, second, pixel_size_m=None) -> dict:
    from ptychopinn.workflows.evaluation import frc_of_halves

    curves = frc_of_halves(first, second, pixel_size_m)
    return {
        name: {
            "resolution_px": frc.resolution_px,
            "frequency": frc.frequency.tolist(),
            "frc": frc.frc.tolist(),
            "threshold": frc.threshold.tolist(),
        }
        for name, frc in curves.items()
    }


class _Half:
    """A half-scan reconstruction from another solver, in the shape frc_of_halves reads."""

    def __init__(self, obj, illumination):
        self.object, self.illumination = obj, illumination


def best_fidelity(obj, probe, positions, scan) -> dict:
    """Data fidelity at the best half-pixel offset (up to 1 px) of a solver's position frame and the
    intensity scale that fits the counts (pty-chi's far field is not orthonormal)."""
    import torch

    from ptychopinn.refine.problem import calibration_factor
    from ptychopinn.workflows.evaluation import data_fidelity

    best = None
    steps = (-1.0, -0.5, 0.0, 0.5, 1.0)
    for dy in steps:
        for dx in steps:
            where = positions + [dy, dx]
            scale = calibration_factor(
                torch.from_numpy(scan.diffraction),
                torch.from_numpy(where),
                torch.from_numpy(probe),
                torch.from_numpy(obj.astype(np.complex64)),
                None,
                sample=len(where),
            )
            fit = data_fidelity(obj, probe * scale, where, scan.diffraction, scan.mask)
            if best is None or fit["poisson_deviance"] < best["poisson_deviance"]:
                best = {**fit, "position_offset_px": [dy, dx]}
    return best


def run_ptychi(python: str, subset: str, out: Path, threads: int) -> dict:
    path = out / f"lsqml_{subset}.npz"
    started = time.perf_counter()
    subprocess.run(
        [
            python,
            str(REPO / "benchmarks" / "ptychi_real.py"),
            str(DATA),
            "--epochs",
            "100",
            "--modes",
            "5",
            "--subset",
            subset,
            "--threads",
            str(threads),
            "--output",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    with np.load(path) as saved:
        return {
            "object": saved["object"],
            "probe": saved["probe"],
            "positions": saved["positions"],
            "epoch_times": saved["epoch_times"],
            "process_s": wall,
        }


def illumination_of(probe: np.ndarray, positions: np.ndarray, shape) -> np.ndarray:
    import torch

    from ptychopinn.refine import illumination_map

    return illumination_map(torch.from_numpy(positions), torch.from_numpy(probe), tuple(shape)).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=240.0, help="our time budget (s), whole process")
    parser.add_argument("--modes", type=int, default=3)
    parser.add_argument("--ptychi-python", default="/tmp/ptychi-venv/bin/python")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--frc-epochs",
        type=int,
        nargs="*",
        default=[40, 80],
        help="also our half-scan FRC after this many epochs per half (and the full run's time)",
    )
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "real_scan.json"))
    parser.add_argument("--picture", default=str(REPO / "docs" / "images" / "real_scan.png"))
    args = parser.parse_args()

    import torch

    from ptychopinn.refine import RefinementConfig, refine_object

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    scan = read_real_scan()
    work = Path(tempfile.mkdtemp(prefix="bench-real-"))
    results: dict = {"machine": machine(), "threads": args.threads, "budget_s": args.budget}

    # 1. the whole command, as a user runs it
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ptychopinn",
            "reconstruct",
            str(DESCRIPTION),
            "--output-dir",
            str(work / "ours"),
            "--refine-probe",
            "--probe-modes",
            str(args.modes),
            "--time-budget",
            str(args.budget),
            "--no-pretrained",
            "--no-progress",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    results["ours_process_s"] = time.perf_counter() - started

    # 2. the same in-process, every epoch kept
    config = RefinementConfig(refine_probe=True, probe_modes=args.modes, time_budget_s=args.budget)
    ours, snapshots = refine_with_snapshots(scan.diffraction, scan.positions, scan.probe, config, scan.mask)
    print(f"ours: {ours.epochs} epochs in {ours.elapsed_s:.1f} s", flush=True)

    # 3. pty-chi LSQML
    lsqml = run_ptychi(args.ptychi_python, "all", work, args.threads)
    print(f"LSQML: 100 epochs in {lsqml['epoch_times'][-1]:.1f} s", flush=True)
    reference = to_our_frame(lsqml["object"], lsqml["positions"], scan.positions, ours.object.shape)
    lsqml_illumination = illumination_of(lsqml["probe"][0], scan.positions, ours.object.shape)
    well = (ours.illumination >= 0.5 * ours.illumination.max()) & (
        lsqml_illumination >= 0.5 * lsqml_illumination.max()
    )
    curve = []
    for elapsed, obj in snapshots:
        curve.append((elapsed, phase_agreement(obj, reference, well)["phase_pearson"]))
    reached = next((t for t, r in curve if r >= 0.95), None)
    results["ours"] = {
        "epochs": ours.epochs,
        "refinement_s": ours.elapsed_s,
        "seconds_to_phase_pearson_0.95": reached,
        "agreement_with_lsqml": phase_agreement(ours.object, reference, well),
        "pearson_curve": curve,
        "probe_calibration_factor": ours.probe_scale,
    }
    results["lsqml"] = {
        "epochs": 100,
        "solver_s": float(lsqml["epoch_times"][-1]),
        "process_s": lsqml["process_s"],
    }

    # 4. half-scan FRC
    halves = []
    for parity in (0, 1):
        index = np.arange(parity, scan.n_patterns, 2)
        half_config = RefinementConfig(refine_probe=True, probe_modes=args.modes, epochs=ours.epochs)
        halves.append(
            refine_object(
                scan.diffraction[index], scan.positions[index], scan.probe, mask=scan.mask, config=half_config
            )
        )
    results["ours"]["half_scan_frc"] = half_frc(*halves)
    results["ours"]["half_scan_s"] = [h.elapsed_s for h in halves]
    lsqml_halves = []
    for subset, parity in (("even", 0), ("odd", 1)):
        half = run_ptychi(args.ptychi_python, subset, work, args.threads)
        index = np.arange(parity, scan.n_patterns, 2)
        obj = to_our_frame(half["object"], half["positions"], scan.positions[index], ours.object.shape)
        lsqml_halves.append(_Half(obj, illumination_of(half["probe"][0], scan.positions[index], obj.shape)))
        results["lsqml"].setdefault("half_scan_s", []).append(float(half["epoch_times"][-1]))
    results["lsqml"]["half_scan_frc"] = half_frc(*lsqml_halves)

    # 4b. how soon our halves reach that resolution
    results["frc_epochs"] = {}
    for epochs in args.frc_epochs:
        short = RefinementConfig(refine_probe=True, probe_modes=args.modes, epochs=epochs)
        parts = [
            refine_object(
                scan.diffraction[parity::2],
                scan.positions[parity::2],
                scan.probe,
                mask=scan.mask,
                config=short,
            )
            for parity in (0, 1)
        ]
        full = refine_object(scan.diffraction, scan.positions, scan.probe, mask=scan.mask, config=short)
        results["frc_epochs"][epochs] = {
            "half_scan_frc_phase_px": half_frc(*parts)["phase"]["resolution_px"],
            "half_s": [part.elapsed_s for part in parts],
            "full_scan_s": full.elapsed_s,
        }
        print(f"{epochs} epochs: {results['frc_epochs'][epochs]}", flush=True)

    # 5. data misfit against the noise floor
    results["ours"]["data_fidelity"] = best_fidelity(ours.object, ours.probe, ours.positions, scan)
    results["lsqml"]["data_fidelity"] = best_fidelity(
        lsqml["object"], lsqml["probe"][0], lsqml["positions"], scan
    )

    picture(ours.object, reference, well, results, Path(args.picture))
    write_results(args.output, results)
    o, q = results["ours"], results["lsqml"]
    print(f"{'':28s}{'ptychopinn':>14s}{'pty-chi LSQML':>16s}")
    print(f"{'solver time (s)':28s}{o['refinement_s']:14.1f}{q['solver_s']:16.1f}")
    print(f"{'whole process (s)':28s}{results['ours_process_s']:14.1f}{q['process_s']:16.1f}")
    print(f"{'epochs':28s}{o['epochs']:14d}{100:16d}")
    print(
        f"{'half-scan FRC phase (px)':28s}{o['half_scan_frc']['phase']['resolution_px']:14.2f}"
        f"{q['half_scan_frc']['phase']['resolution_px']:16.2f}"
    )
    print(
        f"{'Poisson deviance / floor':28s}"
        f"{o['data_fidelity']['poisson_deviance']:8.3f}/{o['data_fidelity']['poisson_deviance_noise_floor']:.3f}"
        f"{q['data_fidelity']['poisson_deviance']:10.3f}/{q['data_fidelity']['poisson_deviance_noise_floor']:.3f}"
    )
    print(
        f"phase Pearson against LSQML: {o['agreement_with_lsqml']['phase_pearson']:.3f}; "
        f"0.95 reached after {reached} s"
    )
    return 0


def picture(ours: np.ndarray, reference: np.ndarray, well: np.ndarray, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptychopinn.evaluation import compare_objects, covered_region

    comparison = compare_objects(ours, reference, well, remove_ramp=True)
    r0, r1, c0, c1 = covered_region(well)
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, image, title in (
        (
            axes[0],
            np.angle(comparison.aligned),
            f"ptychopinn ({results['ours']['epochs']} epochs, {results['ours']['refinement_s']:.0f} s)",
        ),
        (
            axes[1],
            np.angle(comparison.reference),
            f"pty-chi LSQML (100 epochs, {results['lsqml']['solver_s']:.0f} s)",
        ),
    ):
        low, high = np.percentile(np.angle(comparison.reference), [0.5, 99.5])
        shown = ax.imshow(image, cmap="gray", vmin=low, vmax=high)
        ax.set_title(f"phase: {title}", fontsize=10)
        fig.colorbar(shown, ax=ax, fraction=0.046, label="rad")
    for name, style in (("ours", "-"), ("lsqml", "--")):
        frc = results[name]["half_scan_frc"]["phase"]
        label = "ptychopinn" if name == "ours" else "pty-chi LSQML"
        axes[2].plot(frc["frequency"], frc["frc"], style, label=f"{label}: {frc['resolution_px']:.2f} px")
    axes[2].plot(frc["frequency"], frc["threshold"], "k:", label="1/2-bit threshold")
    axes[2].set_xlabel("spatial frequency (cycles / pixel)")
    axes[2].set_title("half-scan FRC of the phase", fontsize=10)
    axes[2].legend(fontsize=8)
    fig.suptitle(
        f"Real Velociprobe scan, {r1 - r0} x {c1 - c0} px region, phase Pearson "
        f"{results['ours']['agreement_with_lsqml']['phase_pearson']:.3f}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
