"""``ptychopinn``: command-line entry point with one subcommand per job.

Exit codes: 0 success; 1 bad data or a failed check (message names file, key and problem);
2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from .. import __version__
from ..workflows import (
    OBJECT_KINDS,
    SCAN_KINDS,
    ScanFileError,
    ScanValidationError,
    SimulationConfig,
    inspect_file,
    run_example,
    simulate_to_file,
)

_DEFAULTS = SimulationConfig()


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _add_simulation_options(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    group = parser.add_argument_group("scan")
    group.add_argument(
        "--object",
        dest="object_kind",
        choices=OBJECT_KINDS,
        default=d.object_kind,
        help=f"object kind (default: {d.object_kind})",
    )
    group.add_argument(
        "--probe",
        default=d.probe,
        help="'focused', 'gaussian', or a file (NPZ, CXI, .npy) holding an N x N probe "
        f"(default: {d.probe})",
    )
    group.add_argument(
        "--scan",
        dest="scan_kind",
        choices=SCAN_KINDS,
        default=d.scan_kind,
        help=f"trajectory (default: {d.scan_kind})",
    )
    group.add_argument(
        "--n-positions",
        "--n-images",
        type=_positive_int,
        default=d.n_positions,
        help=f"number of scan positions (default: {d.n_positions})",
    )
    group.add_argument(
        "--patch-size",
        "-N",
        dest="pattern_size",
        type=_positive_int,
        default=d.pattern_size,
        help=f"detector / patch size N in pixels, even (default: {d.pattern_size})",
    )
    group.add_argument(
        "--step",
        dest="step_px",
        type=_positive_float,
        default=d.step_px,
        help=f"mean step between positions, object pixels (default: {d.step_px})",
    )
    group.add_argument(
        "--jitter",
        dest="jitter_px",
        type=_non_negative_float,
        default=d.jitter_px,
        help=f"raster jitter, pixels (default: {d.jitter_px})",
    )
    group.add_argument(
        "--photons",
        "--nphotons",
        dest="photons_per_pattern",
        type=_positive_float,
        default=d.photons_per_pattern,
        help=f"mean photons per pattern (default: {d.photons_per_pattern:g})",
    )
    group.add_argument(
        "--no-noise",
        dest="noise",
        action="store_false",
        help="write expected intensities instead of Poisson counts",
    )
    group.add_argument(
        "--beamstop-radius",
        dest="beamstop_radius_px",
        type=_non_negative_float,
        default=d.beamstop_radius_px,
        help="central beamstop radius, detector pixels (default: none)",
    )
    group.add_argument(
        "--phase-range",
        type=_non_negative_float,
        default=d.phase_range,
        help=f"object phase span in rad (default: pi = {d.phase_range:.4f})",
    )
    group.add_argument(
        "--amplitude-min",
        type=_non_negative_float,
        default=d.amplitude_min,
        help=f"lowest object amplitude, 0..1 (default: {d.amplitude_min})",
    )
    group.add_argument(
        "--include-patches",
        action="store_true",
        help="also store the ground-truth patch of every position (Y)",
    )
    geometry = parser.add_argument_group("geometry (SI)")
    geometry.add_argument(
        "--energy-ev",
        type=_positive_float,
        default=d.energy_ev,
        help=f"photon energy, eV (default: {d.energy_ev:g})",
    )
    geometry.add_argument(
        "--distance",
        dest="detector_distance_m",
        type=_positive_float,
        default=d.detector_distance_m,
        help=f"detector distance, m (default: {d.detector_distance_m:g})",
    )
    geometry.add_argument(
        "--detector-pixel-size",
        dest="detector_pixel_size_m",
        type=_positive_float,
        default=d.detector_pixel_size_m,
        help=f"detector pixel pitch, m (default: {d.detector_pixel_size_m:g})",
    )
    parser.add_argument(
        "--seed", type=int, default=d.seed, help=f"fixes object, scan and noise (default: {d.seed})"
    )


_SIMULATION_FIELDS = (
    "object_kind",
    "probe",
    "scan_kind",
    "n_positions",
    "pattern_size",
    "step_px",
    "jitter_px",
    "photons_per_pattern",
    "noise",
    "beamstop_radius_px",
    "phase_range",
    "amplitude_min",
    "include_patches",
    "energy_ev",
    "detector_distance_m",
    "detector_pixel_size_m",
    "seed",
)


def _simulation_config(args: argparse.Namespace) -> SimulationConfig:
    return SimulationConfig(**{name: getattr(args, name) for name in _SIMULATION_FIELDS})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptychopinn",
        description="Physics-informed neural network for ptychographic reconstruction.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    simulate = sub.add_parser(
        "simulate",
        help="simulate a scan and write it as NPZ or CXI",
        description="Simulate a ptychographic scan (ground truth included).",
    )
    simulate.add_argument(
        "--output", "-o", required=True, help="output file: .npz or .cxi (.h5, .hdf5)"
    )
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_simulation_options(simulate)

    inspect = sub.add_parser(
        "inspect",
        help="show what a scan file holds and what is wrong with it",
        description="Read scan files, check every value, report contents and problems. "
        "Exits 1 when any file has a problem.",
    )
    inspect.add_argument("files", nargs="+", metavar="FILE", help="NPZ or CXI/HDF5 scan file(s)")
    inspect.add_argument(
        "--nphotons",
        type=_positive_float,
        default=None,
        help="mean photons per pattern, for NPZ files holding normalised amplitudes",
    )

    example = sub.add_parser(
        "example",
        help="run the built-in example end to end",
        description="Simulate a small scan, write NPZ and CXI, inspect, draw.",
    )
    example.add_argument(
        "--output-dir",
        "--output_dir",
        default="example-output",
        help="folder for the outputs (default: example-output)",
    )
    example.add_argument(
        "--n-positions",
        "--n-images",
        type=_positive_int,
        default=_DEFAULTS.n_positions,
        help=f"number of scan positions (default: {_DEFAULTS.n_positions})",
    )
    example.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="random seed")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        config = _simulation_config(args)
        scan = simulate_to_file(config, args.output, progress=False if args.no_progress else None)
        totals = scan.total_counts()
        size = scan.pattern_size
        print(
            f"wrote {args.output}: {scan.n_patterns} patterns of {size}x{size}, "
            f"object {scan.object.shape[0]}x{scan.object.shape[1]}, mean counts {totals.mean():.6g}"
        )
        return 0
    if args.command == "inspect":
        status = 0
        for path in args.files:
            report = inspect_file(path, photons_per_pattern=args.nphotons)
            print(report.format_text())
            status = status or (0 if report.ok else 1)
        return status
    if args.command == "example":
        config = _DEFAULTS.replace(n_positions=args.n_positions, seed=args.seed)
        return 0 if run_example(args.output_dir, config).ok else 1
    raise AssertionError(f"unhandled command {args.command}")  # argparse guards this


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ScanFileError, ScanValidationError) as exc:
        print(f"ptychopinn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"ptychopinn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
