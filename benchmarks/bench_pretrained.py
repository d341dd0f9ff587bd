"""Generalisation of a pretrained network: single pass vs. refinement, on scans it never saw.

Held-out scans are simulated with the pretraining probe but with object classes and photon
counts outside the pretraining corpus (the shipped model never saw natural images; its
photon range is 3e4..3e7). For each scan:

- single pass: ``infer`` (group, predict, stitch) with the network, then phase SSIM,
  amplitude SSIM and FRC resolution against the truth, and the wall time;
- refinement from a constant object and from the network's prediction
  (``reconstruct``): the time to phase SSIM 0.95 (counted from the start, network included).

With ``--data-consistency-steps K ...`` the single pass is also measured with K plain
data-consistency steps over 2 x 2 groups after the network (``infer --data-consistency-steps``).
With ``--checkpoints`` it also evaluates the single pass of checkpoints saved during
pretraining: quality against training budget (the curve). With ``--compare`` it evaluates
bundles of other generators pretrained with the same budget.

Usage::

    python benchmarks/bench_pretrained.py --model src/ptychopinn/pretrained/focused-n64.zip \\
        --checkpoints RUN/checkpoints --compare cnn=RUN_CNN/model.zip hybrid=RUN_HYB/model.zip
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_reconstruct import time_to_quality
from results_io import machine, write_results

#: (label, object kind, photons per pattern): unseen classes, and photon counts in and out of range
HELD_OUT = (
    ("natural @1e6", "natural", 1e6),
    ("natural @1e4", "natural", 1e4),
    ("natural @1e8", "natural", 1e8),
    ("grf @1e6", "grf", 1e6),
)


def held_out_scans(work: Path, n_positions: int) -> list[tuple[str, Path]]:
    from ptychopinn.io import write_scan
    from ptychopinn.simulate import SimulationConfig, simulate_scan

    scans = []
    for k, (label, kind, photons) in enumerate(HELD_OUT):
        path = work / f"held_out_{k}.npz"
        config = SimulationConfig(
            object_kind=kind, photons_per_pattern=photons, n_positions=n_positions, seed=1000 + k
        )
        write_scan(simulate_scan(config), path)
        scans.append((label, path))
    return scans


def single_pass(module, scan_path: Path, steps: int = 0) -> dict:
    """Network alone (``steps`` = 0), or followed by data-consistency steps over 2 x 2 groups."""
    from ptychopinn.io import read_scan
    from ptychopinn.workflows import predict_object
    from ptychopinn.workflows.evaluation import compare_to_truth
    from ptychopinn.workflows.inference import with_data_consistency

    scan = read_scan(scan_path)
    started = time.perf_counter()
    if steps:
        module, gridsize = with_data_consistency(module, steps, gridsize=2), 2
    else:
        gridsize = round(module.hparams.channels**0.5)
    predicted = predict_object(module, scan, gridsize=gridsize, batch_size=64, progress=False)
    seconds = time.perf_counter() - started
    comparison = compare_to_truth(
        predicted.object, scan.object, predicted.weight_sum, pixel_size_m=scan.pixel_size_m()
    )
    frc = comparison.phase.frc
    return {
        "phase_ssim": comparison.phase.ssim,
        "phase_pearson": comparison.phase.pearson,
        "amplitude_ssim": comparison.amplitude.ssim,
        "frc_resolution_px": frc.resolution_px if frc else None,
        "seconds": seconds,
        "patterns_per_second": scan.n_patterns / seconds,
    }


def print_single_pass(rows: list[dict]) -> None:
    print(f"{'held-out scan':<14} {'DC steps':>8} {'phase SSIM':>10} {'Pearson':>8} {'amp SSIM':>9} "
          f"{'FRC px':>7} {'s/scan':>7}")  # fmt: skip
    for row in rows:
        for steps, r in [("0", row["single_pass"]), *row.get("with_steps", {}).items()]:
            frc = f"{r['frc_resolution_px']:.2f}" if r["frc_resolution_px"] else "-"
            print(f"{row['scan']:<14} {steps:>8} {r['phase_ssim']:>10.3f} {r['phase_pearson']:>8.3f} "
                  f"{r['amplitude_ssim']:>9.3f} {frc:>7} {r['seconds']:>7.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="the pretrained bundle")
    parser.add_argument("--checkpoints", help="folder of checkpoints saved during pretraining (the curve)")
    parser.add_argument("--compare", nargs="*", default=[], metavar="NAME=BUNDLE", help="other generators")
    parser.add_argument("--n-positions", type=int, default=576, help="positions per held-out scan")
    parser.add_argument("--refine-budget", type=float, default=30.0, help="refinement seconds per start")
    parser.add_argument(
        "--data-consistency-steps",
        type=int,
        nargs="*",
        default=[],
        metavar="K",
        help="also: the single pass followed by K data-consistency steps (2 x 2 groups)",
    )
    parser.add_argument("--single-pass-only", action="store_true", help="skip refinement, curve, generators")
    parser.add_argument("--output", default="benchmarks/results/pretrained.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    import torch

    from ptychopinn.models import PINNModule
    from ptychopinn.workflows import load_model_bundle

    work = Path(tempfile.mkdtemp(prefix="bench_pretrained_"))
    scans = held_out_scans(work, args.n_positions)
    loaded = load_model_bundle(args.model)
    manifest = loaded.manifest
    rows = []
    for label, path in scans:
        row = {"scan": label, "single_pass": single_pass(loaded.module, path)}
        print(f"{label}: single pass {row['single_pass']}", file=sys.stderr)
        row["with_steps"] = {str(k): single_pass(loaded.module, path, k) for k in args.data_consistency_steps}
        rows.append(row)
    if args.single_pass_only:
        print_single_pass(rows)
        output = write_results(args.output, {"benchmark": "pretrained", "machine": machine(),
                                             "model": os.fspath(args.model), "held_out": rows})  # fmt: skip
        print(f"wrote {output}")
        return 0
    # refinement side by side on the headline scan (unseen class at 1e6 photons)
    headline = scans[0][1]
    refinement = {
        start: time_to_quality(headline, work / f"rec_{start}", model, args.refine_budget)
        for start, model in (("constant", None), ("network", Path(args.model)))
    }
    for result in refinement.values():  # time to several levels, from the per-epoch curve
        for level in (0.8, 0.9, 0.95):
            result[f"seconds_to_phase_ssim_{level}"] = next(
                (t for t, ssim, _ in result["curve"] if ssim >= level), None
            )
    curve = []
    if args.checkpoints:
        for checkpoint in sorted(Path(args.checkpoints).glob("best-epoch=*.ckpt")):
            module = PINNModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
            quality = single_pass(module, headline)
            curve.append({"checkpoint": checkpoint.name, "global_step": int(state["global_step"]), **quality})
            print(f"{checkpoint.name}: {quality}", file=sys.stderr)
    generators = {str(manifest["generator"]): rows[0]["single_pass"]}
    for entry in args.compare:
        name, bundle = entry.split("=", 1)
        generators[name] = single_pass(load_model_bundle(bundle).module, headline)

    print(f"\nmodel: {args.model} ({manifest['generator']}, {manifest.get('global_steps')} steps, "
          f"{manifest.get('wall_time_s', 0):.0f} s of pretraining)")  # fmt: skip
    print_single_pass(rows)
    print(f"\nrefinement on '{scans[0][0]}' ({args.refine_budget:.0f} s):")
    for start, r in refinement.items():
        times = ", ".join(
            f"t({level}) = " + (f"{r[f'seconds_to_phase_ssim_{level}']:.1f} s"
                                if r[f"seconds_to_phase_ssim_{level}"] else "-")
            for level in (0.8, 0.9, 0.95)
        )  # fmt: skip
        print(f"  from {start:<9} {times}, final phase SSIM {r['final_phase_ssim']:.3f}")
    if curve:
        print("\nsingle-pass phase SSIM against pretraining steps:")
        for point in curve:
            ssim, pearson = point["phase_ssim"], point["phase_pearson"]
            print(f"  step {point['global_step']:>6}: {ssim:.3f} (Pearson {pearson:.3f})")
    print("\ngenerators (single pass, headline scan):")
    for name, r in generators.items():
        print(f"  {name:<8} phase SSIM {r['phase_ssim']:.3f}, Pearson {r['phase_pearson']:.3f}")
    report = {
        "benchmark": "pretrained",
        "machine": machine(),
        "model": os.fspath(args.model),
        "pretraining": {k: manifest.get(k) for k in ("generator", "global_steps", "wall_time_s", "pretrain")},
        "held_out": rows,
        "refinement": refinement,
        "curve": curve,
        "generators": generators,
    }
    output = write_results(args.output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
