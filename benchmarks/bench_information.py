"""How well do C overlapping patterns determine an object patch? (the bound on a single pass)

A network that sees a group of C = g^2 diffraction patterns can at best recover what those
patterns determine. This benchmark measures that directly, with no network: for groups of
g x g neighbouring positions of a simulated scan it solves for the group's object region by
gradient descent through the known probe (amplitude loss, Adam, many iterations), then
compares the seed position's patch with the truth. The error is the weighted RMS of the
phase difference inside the probe (weights |P|^2 / max), after removing each patch's
constant phase (which no diffraction pattern can fix).

With ``--model BUNDLE`` (one or more) the same error is measured for the network's
predicted patches on the same groups, to place a network against the bound of its gridsize.

Usage::

    python benchmarks/bench_information.py --gridsizes 1 2 3 \\
        --model src/ptychopinn/pretrained/focused-n64.zip
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
from results_io import machine, write_results


def patch_phase_error(estimate: np.ndarray, truth: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per patch: probe-weighted RMS phase difference (rad) after the best constant phase."""
    offset = np.angle(np.sum(weight * estimate * np.conj(truth), axis=(-2, -1)))
    residual = np.angle(estimate * np.exp(-1j * offset)[..., None, None] * np.conj(truth))
    return np.sqrt(np.sum(weight * residual**2, axis=(-2, -1)) / weight.sum())


def solve_groups(scan, groups, probe, iterations: int, learning_rate: float):
    """Object patches of each group's seed position, solved from the group's patterns alone."""
    import torch

    from ptychopinn.physics import diffraction_intensity, extract_patches

    size = scan.pattern_size
    reach = int(np.ceil(np.abs(groups.offsets).max())) if groups.offsets.size else 0
    side = size + 2 * reach + 4
    positions = torch.from_numpy(groups.offsets + side / 2).float()
    measured = torch.from_numpy(np.asarray(scan.diffraction[:], dtype=np.float32))[groups.indices].sqrt()
    canvas = torch.ones(len(groups), side, side, dtype=torch.complex64, requires_grad=True)
    optimiser = torch.optim.Adam([canvas], lr=learning_rate)
    for _ in range(iterations):
        optimiser.zero_grad()
        expected = diffraction_intensity(extract_patches(canvas, positions, size), probe)
        loss = ((expected + 1e-6).sqrt() - measured).pow(2).mean()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return extract_patches(canvas, positions, size)[:, 0].numpy()


def network_patches(bundle: str, scan, groups) -> np.ndarray:
    """The network's predicted patch at each group's seed position."""
    import torch

    from ptychopinn.data.dataset import GroupedDiffraction, input_scale
    from ptychopinn.workflows import load_model_bundle

    module = load_model_bundle(bundle).module.eval()
    per_scan = module.hparams.get("input_normalisation", "frozen") == "per_scan"
    scale = input_scale(scan) if per_scan else float(module.input_scale)
    dataset = GroupedDiffraction(scan, groups, scale)
    items = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([item["x"] for item in items])
    offsets = torch.stack([item["offsets"] for item in items])
    with torch.inference_mode():
        patches, _ = module(x, offsets)
    return patches[:, 0].numpy()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gridsizes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--groups", type=int, default=96, help="groups per gridsize")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--object-kind", default="natural", help="the README example's class")
    parser.add_argument("--photons", type=float, default=1e6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", nargs="*", default=[], help="bundles to place against the bound")
    parser.add_argument("--output", default="benchmarks/results/information.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    import torch

    from ptychopinn.data.grouping import group_positions
    from ptychopinn.physics import probe_weight
    from ptychopinn.simulate import SimulationConfig, simulate_scan

    torch.manual_seed(args.seed)
    config = SimulationConfig(
        object_kind=args.object_kind, photons_per_pattern=args.photons, seed=args.seed, include_patches=True
    )
    scan = simulate_scan(config)
    probe = torch.from_numpy(scan.probe_modes.astype(np.complex64))
    weight = probe_weight(probe).numpy()
    weight = weight / weight.max()

    rows = []
    for gridsize in args.gridsizes:
        groups = group_positions(scan.positions, gridsize, args.groups, None, args.seed)
        truth = scan.patches[groups.indices[:, 0]]
        started = time.perf_counter()
        solved = solve_groups(scan, groups, probe, args.iterations, args.learning_rate)
        error = patch_phase_error(solved, truth, weight)
        row = {"source": "solved from the group's patterns", "gridsize": gridsize,
               "phase_rms_rad": float(error.mean()), "seconds": time.perf_counter() - started}  # fmt: skip
        rows.append(row)
        print(f"g = {gridsize}: solved {row['phase_rms_rad']:.3f} rad", file=sys.stderr)
    for bundle in args.model:
        from ptychopinn.workflows import load_model_bundle

        gridsize = int(load_model_bundle(bundle).gridsize)
        groups = group_positions(scan.positions, gridsize, args.groups, None, args.seed)
        truth = scan.patches[groups.indices[:, 0]]
        error = patch_phase_error(network_patches(bundle, scan, groups), truth, weight)
        rows.append({"source": bundle, "gridsize": gridsize, "phase_rms_rad": float(error.mean())})

    flat = patch_phase_error(np.ones_like(scan.patches), scan.patches, weight).mean()
    print(f"\n{args.object_kind} object, {args.photons:.0e} photons per pattern, N = {scan.pattern_size}, "
          f"{args.groups} groups; a flat guess errs by {flat:.3f} rad")  # fmt: skip
    print(f"{'patch from':<48} {'g':>2} {'phase RMS (rad)':>16}")
    for row in rows:
        print(f"{row['source']:<48} {row['gridsize']:>2} {row['phase_rms_rad']:>16.3f}")
    report = {
        "benchmark": "information",
        "machine": machine(),
        "object_kind": args.object_kind,
        "photons": args.photons,
        "groups": args.groups,
        "iterations": args.iterations,
        "flat_phase_rms_rad": float(flat),
        "rows": rows,
    }
    print(f"wrote {write_results(args.output, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
