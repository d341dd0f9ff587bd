"""``ptychopinn``: command-line entry point with one subcommand per job.

Exit codes: 0 success; 1 bad data or a failed check (message names file, key and problem);
2 bad command-line usage; 3 training stopped by SIGINT/SIGTERM after saving a checkpoint
(continue with ``--resume last``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import traceback
import warnings
from collections.abc import Sequence

from .. import __version__
from ..workflows import (
    ACCELERATORS,
    GENERATOR_NAMES,
    LOGGERS,
    LOSSES,
    OBJECT_KINDS,
    OPTIMIZERS,
    PROBE_CALIBRATIONS,
    REFINE_LOSSES,
    SCAN_KINDS,
    SCHEDULERS,
    SOLVERS,
    STRATEGIES,
    BundleError,
    CorpusConfig,
    ExecutionConfig,
    PretrainConfig,
    RefinementConfig,
    ScanFileError,
    ScanValidationError,
    SimulationConfig,
    evaluate_reconstruction,
    infer_scan,
    inspect_file,
    is_secondary_process,
    load_run_config,
    pretrain_model,
    reconstruct_file,
    run_example,
    simulate_to_file,
    train_model,
)

_DEFAULTS = SimulationConfig()
EXIT_INTERRUPTED = 3


def _solver_defaults(option: str) -> str:
    """``name value`` for every refinement solver, from the solvers' own defaults."""
    shown = {None: "by dose"}
    return ", ".join(
        f"{name} {shown.get(solver.defaults[option], solver.defaults[option])}"
        for name, solver in SOLVERS.items()
    )


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


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


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
        help=f"'focused', 'gaussian', or a file (NPZ, CXI, .npy) holding an N x N probe (default: {d.probe})",
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


def _add_train_options(parser: argparse.ArgumentParser, *, scan_data: bool = True) -> None:
    """Flags of ``train``; each dest is ``section__field`` of :class:`RunConfig`.

    Every default is None (= not given), so that defaults < --config file < flags.
    ``scan_data=False`` (``pretrain``) leaves out the flags about scan files and grouping.
    """
    bool_flag = argparse.BooleanOptionalAction

    def add(group, *flags, dest, **kwargs):
        if "type" in kwargs and "choices" not in kwargs:
            kwargs.setdefault("metavar", dest.split("__", 1)[1].upper())
        group.add_argument(*flags, dest=dest, default=None, **kwargs)

    # fmt: off

    data = parser.add_argument_group("data")
    add(data, "--gridsize", dest="data__gridsize", type=_positive_int,
        help="g: groups of C = g^2 neighbouring positions (default 1)")
    if scan_data:
        add(data, "--train-data", "--train_data_file", "--train-data-file", dest="data__train_data",
            metavar="FILE", help="training scan (NPZ, CXI, or a ptychodus directory)")
        add(data, "--test-data", "--test_data_file", "--test-data-file", dest="data__test_data",
            metavar="FILE", help="validation scan (optional)")
        add(data, "--bin", "--detector-bin", dest="data__detector_bin", type=_positive_int, metavar="F",
            help="bin F x F detector pixels: N/F per pattern, counts kept, object pixel unchanged, field "
            "of view / F (the probe must fit it); infer bins alike (default 1)")
        add(data, "--probe", dest="data__probe", metavar="FILE",
            help="probe replacing the scan's guess: reconstruct's reconstruction.npz (refined modes), "
            "a scan file or a .npy array")
        add(data, "--holdout-region", dest="data__holdout_region", metavar="SIDE:FRACTION",
            help="hold out a contiguous block of positions (e.g. right:0.25) from training and "
            "validation; infer --held-out reconstructs it")
        add(data, "--n-groups", "--n_groups", "--n-images", "--n_images", dest="data__n_groups",
            type=_positive_int, help="groups per scan (default: one per position)")
        add(data, "--k-neighbors", dest="data__k_neighbors", type=_positive_int,
            help="neighbourhood size K for grouping (default 2C - 1)")
        add(data, "--val-fraction", dest="data__val_fraction", type=_non_negative_float,
            help="without --test-data, fraction of positions held out for validation (default 0)")
        add(data, "--nphotons", dest="data__photons_per_pattern", type=_positive_float,
            help="photons per pattern for NPZ files with normalised amplitudes")

    model = parser.add_argument_group("model")
    add(model, "--generator", dest="model__generator", choices=GENERATOR_NAMES,
        help="generator network (default: fno, the best measured)")
    add(model, "--width", dest="model__width", type=_positive_int,
        help="network width / filter scale")
    add(model, "--depth", dest="model__depth", type=_positive_int, help="stages or spectral blocks")
    add(model, "--modes", dest="model__modes", type=_positive_int,
        help="Fourier modes of spectral layers")
    add(model, "--unroll-steps", dest="model__unroll_steps", type=_non_negative_int,
        help="unrolled generator: data-consistency steps (default 4)")
    add(model, "--unroll-corrections", dest="model__unroll_corrections", action=bool_flag,
        help="unrolled generator: a learned correction after each step (default on)")
    add(model, "--probe-trainable", dest="model__probe_trainable", action=bool_flag,
        help="refine the probe during training")
    add(model, "--probe-calibration", dest="model__probe_calibration", choices=PROBE_CALIBRATIONS,
        help="rescale the probe to the mean counts: auto (default), mean_counts, none")

    training = parser.add_argument_group("training")
    add(training, "--epochs", "--max_epochs", "--max-epochs", "--nepochs", dest="training__epochs",
        type=_positive_int, help="maximum epochs (default 50)")
    add(training, "--time-budget", dest="training__time_budget_s", type=_positive_float,
        metavar="SECONDS", help="stop training after this many seconds")
    add(training, "--max-steps", dest="training__max_steps", type=_positive_int,
        help="stop after this many optimiser steps")
    add(training, "--loss", dest="training__loss", choices=LOSSES, help="loss (default poisson)")
    if scan_data:
        add(training, "--init-from", dest="training__init_from", metavar="BUNDLE",
            help="start from a (pretrained) model bundle's network weights; its architecture is used")
    else:
        add(training, "--init-from", dest="training__init_from", metavar="BUNDLE",
            help="start from a bundle's network weights: the same architecture, or an fno bundle "
            "as the encoder of --generator unrolled")
    add(training, "--mae-weight", dest="training__mae_weight", type=_non_negative_float,
        help="weight of the amplitude MAE in poisson+mae")

    execution = parser.add_argument_group("execution")
    add(execution, "--accelerator", "--device", dest="execution__accelerator", choices=ACCELERATORS,
        help="auto (a GPU when present), cpu, gpu, cuda, mps, tpu (--device: upstream's spelling)")
    add(execution, "--devices", dest="execution__devices",
        help="auto, a count (-1: all), or indices like 0,1")
    add(execution, "--num-nodes", "--num_nodes", dest="execution__num_nodes", type=_positive_int,
        help="machines for multi-node training")
    add(execution, "--strategy", dest="execution__strategy", choices=STRATEGIES,
        help="Lightning strategy (default auto)")
    add(execution, "--precision", dest="execution__precision",
        help="32-true (default), 16-mixed, bf16-mixed, 64-true, ...")
    add(execution, "--deterministic", dest="execution__deterministic", action=bool_flag,
        help="deterministic algorithms: bit-identical CPU runs for a seed")
    add(execution, "--seed", dest="execution__seed", type=int,
        help="fixes splits, grouping, initialisation (default 0)")
    add(execution, "--num-workers", "--num_workers", dest="execution__num_workers", type=int,
        help="DataLoader worker processes (default 0)")
    add(execution, "--pin-memory", dest="execution__pin_memory", action=bool_flag,
        help="pin DataLoader memory (for GPU training)")
    add(execution, "--gradient-clip-val", dest="execution__gradient_clip_val",
        type=_non_negative_float, help="clip gradients at this value (default: off)")
    add(execution, "--gradient-clip-algorithm", dest="execution__gradient_clip_algorithm",
        choices=("norm", "value"), help="norm (default) or value")
    add(execution, "--accumulate-grad-batches", dest="execution__accumulate_grad_batches",
        type=_positive_int, help="accumulate gradients over this many batches")
    add(execution, "--learning-rate", "--learning_rate", "--lr", dest="execution__learning_rate",
        type=_positive_float, help="AdamW learning rate (default 1e-3)")
    add(execution, "--scheduler", dest="execution__scheduler", choices=SCHEDULERS,
        help="learning-rate schedule (default none)")
    add(execution, "--batch-size", "--batch_size", dest="execution__batch_size",
        type=_positive_int, help="groups per batch (default 16)")
    add(execution, "--inference-batch-size", dest="execution__inference_batch_size",
        type=_positive_int, help="groups per batch at inference (default 256)")
    add(execution, "--logger", dest="execution__logger", choices=LOGGERS,
        help="csv (default), tensorboard, mlflow, none")
    add(execution, "--disable-mlflow", "--disable_mlflow", dest="execution__logger", action="store_const",
        const="none", help="upstream's flag: the same as --logger none")
    add(execution, "--mlflow-tracking-uri", dest="execution__mlflow_tracking_uri", metavar="URI",
        help="MLflow server or store (default: a local store, OUTPUT_DIR/mlflow.db; never the network)")
    add(execution, "--progress-bar", dest="execution__progress_bar", action=bool_flag,
        help="show the progress bar (default on)")
    add(execution, "--no-progress", "--quiet", dest="execution__progress_bar", action="store_const",
        const=False, help="the same as --no-progress-bar")
    add(execution, "--checkpoint-every", dest="execution__checkpoint_every_n_epochs",
        type=_positive_int, metavar="EPOCHS", help="checkpoint every n epochs (default 1)")
    add(execution, "--save-top-k", dest="execution__save_top_k", type=int,
        help="best checkpoints to keep (-1: all; default 1)")
    add(execution, "--monitor", dest="execution__monitor",
        help="metric for best checkpoints (default auto: val_loss, else train_loss)")
    add(execution, "--early-stopping-patience", dest="execution__early_stopping_patience",
        type=_positive_int, metavar="EPOCHS", help="stop when the monitored metric stalls")
    add(execution, "--log-every-n-steps", dest="execution__log_every_n_steps",
        type=_positive_int, help="logging interval in steps (default 10)")
    # fmt: on


def train_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """The ``{section: {field: value}}`` the user gave on the command line."""
    overrides: dict[str, dict[str, object]] = {}
    for dest, value in vars(args).items():
        if "__" in dest and value is not None:
            section, name = dest.split("__", 1)
            overrides.setdefault(section, {})[name] = value
    return overrides


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
    simulate.add_argument("--output", "-o", required=True, help="output file: .npz or .cxi (.h5, .hdf5)")
    simulate.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bar")
    _add_simulation_options(simulate)

    inspect = sub.add_parser(
        "inspect",
        help="show what a scan file or model bundle holds and what is wrong with it",
        description="Read scan files, check every value, report contents and problems. "
        "Exits 2 when any file has a problem.",
    )
    inspect.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="NPZ or CXI/HDF5 scan file(s), ptychodus directories, model bundles",
    )
    inspect.add_argument(
        "--nphotons",
        type=_positive_float,
        default=None,
        help="mean photons per pattern, for NPZ files holding normalised amplitudes",
    )

    train = sub.add_parser(
        "train",
        help="train the physics-informed network on a scan",
        description="Self-supervised training through the forward model. Precedence: "
        "defaults < --config file < flags. Writes config.yaml, checkpoints/, logs and "
        "training_summary.json to --output-dir.",
    )
    train.add_argument("--output-dir", "--output_dir", required=True, help="folder for all outputs")
    train.add_argument("--config", help="YAML or JSON file with data/model/training/execution sections")
    train.add_argument(
        "--resume",
        metavar="PATH",
        help="continue from a checkpoint; 'last': OUTPUT_DIR/checkpoints/last.ckpt; 'auto': it, if present",
    )
    _add_train_options(train)

    pre = sub.add_parser(
        "pretrain",
        help="pretrain a network for a probe on a corpus simulated on the fly",
        description="Train one network per beamline set-up: many simulated objects (classes, "
        "phase ranges, absorption, photon counts, scan steps) through the given probe, never "
        "written to disk; validation on a fixed held-out set; the usual bundle at the end. "
        "One epoch is --samples-per-epoch items; stop with --epochs, --time-budget or --max-steps. "
        "The loss defaults to supervised (the corpus knows its objects).",
    )
    pre.add_argument("--probe", required=True,
                     help="a simulator probe (focused, gaussian) or a file holding one: scan (NPZ, CXI, "
                          "ptychodus directory), ptychodus product.h5, .npy")  # fmt: skip
    pre.add_argument("--output-dir", required=True, help="folder for all outputs")
    pre.add_argument("--config", help="YAML or JSON file with model/training/execution sections")
    pre.add_argument("--resume", metavar="PATH", help="continue from a checkpoint (like train)")
    corpus = pre.add_argument_group("corpus")
    d = CorpusConfig()
    corpus.add_argument("--pattern-size", "-N", type=_positive_int, default=64,
                        help="N for simulator probes (default 64; a file's probe sets its own)")  # fmt: skip
    corpus.add_argument("--samples-per-epoch", type=_positive_int, default=d.samples_per_epoch,
                        help=f"items per epoch (default {d.samples_per_epoch})")  # fmt: skip
    corpus.add_argument("--validation-items", type=int, default=256,
                        help="fixed held-out items (default 256; 0: no validation)")  # fmt: skip
    corpus.add_argument("--object-kinds", nargs="+", choices=OBJECT_KINDS, default=list(d.object_kinds),
                        help="object classes drawn from (default: all)")  # fmt: skip
    ranges = (("--photons", "photons"), ("--phase-range", "phase_range"),
              ("--amplitude-min", "amplitude_min"), ("--step-fraction", "step_fraction"))  # fmt: skip
    for flag, name in ranges:
        low, high = getattr(d, name)
        corpus.add_argument(flag, dest=f"corpus_{name}", nargs=2, type=float, metavar=("LOW", "HIGH"),
                            default=[low, high],
                            help=f"range of {name.replace('_', ' ')} (default {low:g} {high:g})")  # fmt: skip
    corpus.add_argument("--corpus-seed", type=int, default=d.seed,
                        help="fixes every simulated item (default 0)")  # fmt: skip
    _add_train_options(pre, scan_data=False)

    infer = sub.add_parser(
        "infer",
        help="reconstruct a scan with a trained model bundle",
        description="Group positions as in training, predict patches in batches, stitch the full "
        "object. Writes reconstruction.npz, amplitude/phase TIFF and PNG, metrics.json when "
        "the data hold a ground truth, inference.json.",
    )
    infer.add_argument("--model", "--model_path", "--model-path", required=True, help="model bundle (.zip)")
    infer.add_argument(
        "--data",
        "--test_data",
        "--test-data",
        required=True,
        help="scan file (NPZ or CXI) or a ptychodus directory",
    )
    infer.add_argument("--output-dir", "--output_dir", required=True, help="folder for the outputs")
    infer.add_argument(
        "--accelerator",
        "--device",
        choices=ACCELERATORS,
        default="auto",
        help="auto (a GPU when present), cpu, gpu, cuda, mps (--device: upstream's spelling)",
    )
    infer.add_argument("--devices", default="auto", help="device indices (the first is used), or auto")
    infer.add_argument("--num-workers", "--num_workers", type=int, default=0, help="DataLoader workers")
    infer.add_argument(
        "--inference-batch-size",
        "--inference_batch_size",
        type=_positive_int,
        default=None,
        help="groups per forward pass (default: by device, 32 patterns on a CPU, 4096 on a GPU)",
    )
    infer.add_argument(
        "--n-groups",
        "--n_groups",
        "--n-images",
        "--n_images",
        type=_positive_int,
        default=None,
        help="groups to predict (default: one per position)",
    )
    infer.add_argument(
        "--nphotons",
        type=_positive_float,
        default=None,
        help="photons per pattern for NPZ files with normalised amplitudes",
    )
    infer.add_argument(
        "--data-consistency-steps",
        type=_non_negative_int,
        default=0,
        metavar="K",
        help="follow a gridsize-1 fno network by K data-consistency steps through the probe over "
        "2 x 2 groups of patterns (default 0: the network alone); better phase, K times slower",
    )
    infer.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bar")
    infer.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="the network's arithmetic (fp16 on a GPU only; stitching stays float32; default fp32)",
    )
    held = infer.add_mutually_exclusive_group()
    held.add_argument(
        "--held-out",
        action="store_const",
        const="held-out",
        dest="region",
        help="reconstruct only the positions the model was trained without (train --holdout-region)",
    )
    held.add_argument(
        "--region",
        metavar="SIDE:FRACTION",
        help="reconstruct only the positions in this region (e.g. right:0.25)",
    )
    infer.add_argument(
        "--pin-memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pin the data loader's host memory (default: on a CUDA device)",
    )
    infer.add_argument(
        "--ptychodus-product",
        action="store_true",
        help="also write OUTPUT_DIR/product.h5, a product that ptychodus opens",
    )

    rec = sub.add_parser(
        "reconstruct",
        help="reconstruct a scan: network prediction (optional), then physics refinement",
        description="The one command for a scan. With --model: the network's prediction, "
        "refined through the forward model. Without: the prediction of a shipped pretrained "
        "network made for the scan's probe, if there is one (--no-pretrained: never), else a "
        "flat object, optionally after a short training on the scan (--train-first). Writes the outputs "
        "of infer plus the refined probe and positions (in reconstruction.npz), the loss "
        "curve (loss.json, loss.png) and reconstruct.json.",
    )
    d = RefinementConfig()
    rec.add_argument(
        "data",
        metavar="DATA",
        help="scan file (NPZ or CXI) or a ptychodus directory (diffraction.h5 + product.h5)",
    )
    rec.add_argument("--output-dir", "--output_dir", required=True, help="folder for the outputs")
    rec.add_argument(
        "--model",
        "--model_path",
        help="model bundle whose prediction starts the refinement "
        "(default: a shipped pretrained model made for the probe, if any)",
    )
    rec.add_argument(
        "--train-first",
        action="store_true",
        help="without --model: train a network on the scan first (see --train-time-budget)",
    )
    rec.add_argument(
        "--train-time-budget",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="training time for --train-first (default 60)",
    )
    rec.add_argument(
        "--time-budget",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop refining after this many seconds",
    )
    rec.add_argument(
        "--epochs",
        type=_positive_int,
        default=d.epochs,
        help=f"maximum refinement epochs (default {d.epochs})",
    )
    rec.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=d.optimizer,
        help="auto (default: preconditioned with --refine-probe, else lbfgs), preconditioned "
        "(PIE/LSQML-class minibatch updates), lbfgs or adam",
    )
    rec.add_argument(
        "--learning-rate",
        "--lr",
        type=_positive_float,
        default=None,
        help="step size (default: the solver's: " + _solver_defaults("learning_rate") + ")",
    )
    rec.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="positions per update, or per chunk for lbfgs (default: the solver's: "
        + _solver_defaults("batch_size")
        + ")",
    )
    rec.add_argument(
        "--loss",
        choices=REFINE_LOSSES,
        default=None,
        help="noise model (default: the solver's: " + _solver_defaults("loss") + ")",
    )
    rec.add_argument("--refine-probe", action="store_true", help="also refine the probe")
    rec.add_argument(
        "--probe-modes",
        type=_positive_int,
        default=None,
        help="with --refine-probe: grow the probe to this many incoherent modes",
    )
    rec.add_argument(
        "--probe-support-radius",
        type=_positive_float,
        default=None,
        metavar="PIXELS",
        help="with --refine-probe: keep the probe zero outside a centred disk of this radius",
    )
    rec.add_argument(
        "--no-probe-calibration",
        action="store_true",
        help="use the probe's power as given (default: scaled to the measured counts, the "
        "factor reported in reconstruct.json)",
    )
    rec.add_argument(
        "--refine-background",
        action="store_true",
        help="also fit an additive background per detector pixel (counts)",
    )
    rec.add_argument("--correct-positions", action="store_true", help="also refine the scan positions")
    rec.add_argument(
        "--max-position-shift",
        type=_positive_float,
        default=d.max_position_shift_px,
        metavar="PIXELS",
        help=f"bound on position corrections (default {d.max_position_shift_px})",
    )
    rec.add_argument(
        "--tv-weight",
        type=_non_negative_float,
        default=d.tv_weight,
        help="total-variation prior weight for low dose (default 0: off)",
    )
    rec.add_argument(
        "--tolerance",
        type=_positive_float,
        default=None,
        help="stop when the loss changes by less than this (relative) for 5 epochs",
    )
    rec.add_argument(
        "--accelerator",
        "--device",
        choices=ACCELERATORS,
        default="auto",
        help="auto (a GPU when present), cpu, gpu, cuda, mps (--device: upstream's spelling)",
    )
    rec.add_argument("--devices", default="auto", help="device indices (the first is used), or auto")
    rec.add_argument(
        "--inference-batch-size",
        type=_positive_int,
        default=64,
        help="groups per network forward pass (default 64)",
    )
    rec.add_argument("--seed", type=int, default=d.seed, help="fixes minibatch order and training")
    rec.add_argument(
        "--nphotons",
        type=_positive_float,
        default=None,
        help="photons per pattern for NPZ files with normalised amplitudes",
    )
    rec.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bars")
    rec.add_argument(
        "--no-pretrained",
        action="store_true",
        help="without --model: start from a flat object even when a shipped pretrained model "
        "matches the probe",
    )
    rec.add_argument(
        "--half-scan-frc",
        action="store_true",
        help="also reconstruct the even and odd positions apart and report their Fourier ring "
        "correlation (resolution without a ground truth; frc.png)",
    )
    rec.add_argument(
        "--ptychodus-product",
        action="store_true",
        help="also write OUTPUT_DIR/product.h5 (object, refined probe and positions, losses) "
        "that ptychodus opens",
    )

    ev = sub.add_parser(
        "evaluate",
        help="judge a reconstruction against a ground truth and/or its data",
        description="With --ground-truth: aligned metrics (MAE, PSNR and SSIM with an explicit data "
        "range, Pearson, FRC with the 1/2-bit threshold) for amplitude and phase, metrics.json and "
        "comparison.png. With --data: the Poisson NLL and deviance of the data under the "
        "reconstruction, and with --half-scan-seconds the FRC of even/odd half-scan reconstructions.",
    )
    ev.add_argument("--reconstruction", required=True, help="reconstruction.npz (or its folder)")
    ev.add_argument("--ground-truth", "--ground_truth", help="scan file with an object, or .npy/.npz array")
    ev.add_argument("--data", help="the scan file, for data fidelity and half-scan FRC")
    ev.add_argument(
        "--output-dir", "--output_dir", required=True, help="folder for metrics.json, comparison.png"
    )
    ev.add_argument("--remove-ramp", action="store_true", help="also remove a linear phase ramp")
    ev.add_argument("--no-register", action="store_true", help="do not register a sub-pixel shift")
    ev.add_argument(
        "--half-scan-seconds",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="with --data: FRC of even/odd half reconstructions refined this long each",
    )

    example = sub.add_parser(
        "example",
        help="run the built-in example end to end",
        description="Simulate a scan, write NPZ and CXI, inspect them, train the network "
        "briefly, reconstruct the scan and write pictures and metrics.",
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
    example.add_argument("--epochs", type=_positive_int, default=10, help="training epochs (default 10)")
    example.add_argument(
        "--refine-seconds",
        type=_positive_float,
        default=20.0,
        help="physics refinement time budget (default 20)",
    )
    return parser


def _files_written(files) -> str:
    return ", ".join(sorted(path.name for path in files.values()))


def _print_comparison(comparison) -> None:
    if comparison is None:
        return
    for name, m in (("amplitude", comparison.amplitude), ("phase", comparison.phase)):
        frc = f", FRC resolution {m.frc.resolution_px:.2f} px" if m.frc else ""
        print(
            f"{name} against the ground truth: SSIM {m.ssim:.3f}, PSNR {m.psnr_db:.2f} dB "
            f"(range {m.data_range:.3g}), Pearson {m.pearson:.3f}, MAE {m.mae:.4g}{frc}"
        )


def _simulate(args: argparse.Namespace) -> int:
    scan = simulate_to_file(
        _simulation_config(args), args.output, progress=False if args.no_progress else None
    )
    size = scan.pattern_size
    print(
        f"wrote {args.output}: {scan.n_patterns} patterns of {size}x{size}, object "
        f"{scan.object.shape[0]}x{scan.object.shape[1]}, mean counts {scan.total_counts().mean():.6g}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        report = inspect_file(path, photons_per_pattern=args.nphotons)
        print(report.format_text())
        status = status or (0 if report.ok else EXIT_BAD_INPUT)
    return status


def _train(args: argparse.Namespace) -> int:
    config = load_run_config(args.config, train_overrides(args))
    summary = train_model(
        config, args.output_dir, resume=args.resume, overwrite=args.overwrite,
        inputs=(args.config,) if args.config else (),
    ).summary  # fmt: skip
    if is_secondary_process():
        return 0  # one final line per run, not one per process
    print(
        f"trained {summary['epochs_completed']} epoch(s), {summary['global_steps']} step(s) in "
        f"{summary['wall_time_s']:.1f} s; outputs in {args.output_dir}"
    )
    if summary["interrupted"]:
        print(
            "interrupted by a signal: checkpoint and bundle saved; continue with --resume last",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


def _infer(args: argparse.Namespace) -> int:
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    result = infer_scan(
        args.model, args.data, args.output_dir, accelerator=args.accelerator,
        devices=ExecutionConfig(devices=args.devices).devices, num_workers=args.num_workers,
        inference_batch_size=args.inference_batch_size, n_groups=args.n_groups,
        photons_per_pattern=args.nphotons, progress=False if args.no_progress else None,
        ptychodus_product=args.ptychodus_product, data_consistency_steps=args.data_consistency_steps,
        overwrite=args.overwrite, pin_memory=args.pin_memory, region=args.region, precision=args.precision,
    )  # fmt: skip
    print(
        f"reconstructed {args.data} at {result.patterns_per_second:.0f} patterns/s; "
        f"wrote {_files_written(result.files)} to {args.output_dir}"
    )
    _print_comparison(result.comparison)
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    refinement = RefinementConfig(
        epochs=args.epochs,
        time_budget_s=args.time_budget,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        loss=args.loss,
        calibrate_probe=not args.no_probe_calibration,
        refine_probe=args.refine_probe,
        probe_modes=args.probe_modes,
        probe_support_radius_px=args.probe_support_radius,
        refine_background=args.refine_background,
        correct_positions=args.correct_positions,
        max_position_shift_px=args.max_position_shift,
        tv_weight=args.tv_weight,
        convergence_tolerance=args.tolerance,
        seed=args.seed,
    )
    result = reconstruct_file(
        args.data, args.output_dir, model=args.model, use_pretrained=not args.no_pretrained,
        train_first=args.train_first,
        train_time_budget_s=args.train_time_budget, refinement=refinement,
        accelerator=args.accelerator, devices=ExecutionConfig(devices=args.devices).devices,
        inference_batch_size=args.inference_batch_size, photons_per_pattern=args.nphotons,
        progress=False if args.no_progress else None, ptychodus_product=args.ptychodus_product,
        half_scan_frc=args.half_scan_frc, overwrite=args.overwrite,
    )  # fmt: skip
    print(
        f"reconstructed {args.data} ({result.start} start) in {result.timings['total_s']:.1f} s; "
        f"wrote {_files_written(result.files)} to {args.output_dir}"
    )
    _print_comparison(result.comparison)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    result = evaluate_reconstruction(
        args.reconstruction, args.output_dir, ground_truth=args.ground_truth, data=args.data,
        remove_ramp=args.remove_ramp, register=not args.no_register, half_scan_seconds=args.half_scan_seconds,
        overwrite=args.overwrite,
    )  # fmt: skip
    _print_comparison(result.comparison)
    if "data_fidelity" in result.metrics:
        print(f"data fidelity: {result.metrics['data_fidelity']}")
    print(f"wrote {_files_written(result.files)} to {args.output_dir}")
    return 0


def _example(args: argparse.Namespace) -> int:
    config = _DEFAULTS.replace(n_positions=args.n_positions, seed=args.seed)
    result = run_example(
        args.output_dir,
        config,
        epochs=args.epochs,
        refine_seconds=args.refine_seconds,
        overwrite=args.overwrite,
    )
    return 0 if result.ok else 1


def _pretrain(args: argparse.Namespace) -> int:
    overrides = train_overrides(args)
    overrides.setdefault("training", {}).setdefault("loss", "supervised")
    run = load_run_config(args.config, overrides)
    config = PretrainConfig(
        probe=args.probe,
        pattern_size=args.pattern_size,
        validation_items=args.validation_items,
        corpus=CorpusConfig(
            object_kinds=tuple(args.object_kinds),
            photons=tuple(args.corpus_photons),
            phase_range=tuple(args.corpus_phase_range),
            amplitude_min=tuple(args.corpus_amplitude_min),
            step_fraction=tuple(args.corpus_step_fraction),
            samples_per_epoch=args.samples_per_epoch,
            seed=args.corpus_seed,
        ),
    )
    summary = pretrain_model(
        config, run, args.output_dir, resume=args.resume, overwrite=args.overwrite
    ).summary
    print(
        f"pretrained {summary['epochs_completed']} epoch(s), {summary['global_steps']} step(s), "
        f"{summary['items_seen']} simulated items in {summary['wall_time_s']:.1f} s; "
        f"bundle {summary.get('bundle')}"
    )
    return 0


_COMMANDS = {
    "simulate": _simulate,
    "inspect": _inspect,
    "pretrain": _pretrain,
    "train": _train,
    "infer": _infer,
    "reconstruct": _reconstruct,
    "evaluate": _evaluate,
    "example": _example,
}


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (which tests and notebooks may swap)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _show_package_log() -> None:
    """Show the package's info messages (what a reader found in a file, ...) on stderr."""
    logger = logging.getLogger("ptychopinn")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    kind = "note" if issubclass(category, UserWarning) else category.__name__
    print(f"{kind}: {message}", file=sys.stderr)


#: Exit statuses: bad input (a file, a key, a value, a flag) and a failure while running.
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
#: Lightning warnings that say nothing about the user's run (regular expressions).
_LIGHTNING_NOISE = (
    r".*smaller than the logging interval.*",
    r".*does not have many workers.*",
    r".*LeafSpec.*is deprecated.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
)
_WRITES_A_FOLDER = ("train", "pretrain", "infer", "reconstruct", "evaluate", "example")
_BAD_INPUT = (ScanFileError, ScanValidationError, BundleError, ValueError, RecursionError)


def _finish_parser(parser: argparse.ArgumentParser) -> None:
    """No abbreviated flags (``--device`` must not become ``--devices``); ``--debug`` everywhere."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                command.allow_abbrev = False
                if name in _WRITES_A_FOLDER:
                    command.add_argument(
                        "--overwrite",
                        action="store_true",
                        help="replace the outputs of an earlier run in --output-dir (removed first; "
                        "inputs are never written). Without it a used folder is refused",
                    )
                command.add_argument(
                    "--debug", action="store_true", help="show the full traceback when a command fails"
                )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every error is one line on stderr naming what is wrong.

    Exit status 0 on success, 2 for bad input (file, key, value or flag), 1 for a failure
    while running (disk full, device error, ...), 3 when a signal stopped training early.
    ``--debug`` adds the traceback.
    """
    parser = build_parser()
    _finish_parser(parser)
    args = parser.parse_args(argv)
    _show_package_log()
    # Lightning's per-run banners (accelerator lines, adverts) are not the user's business
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # the package's notes (what a reader detected, masked, calibrated) as one line each
            warnings.showwarning = _show_note
            for noise in _LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=noise)
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"ptychopinn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (the one place every error becomes a message)
        bad_input = isinstance(exc, _BAD_INPUT)
        if args.debug:
            traceback.print_exc()
        kind = "error" if bad_input else f"failed ({type(exc).__name__})"
        message = str(exc) or type(exc).__name__
        if isinstance(exc, RecursionError):
            message = "input nested too deeply to read"
        if not bad_input:
            message = message.strip().splitlines()[0]
        print(f"ptychopinn {args.command}: {kind}: {message}", file=sys.stderr)
        if not bad_input and not args.debug:
            print(f"ptychopinn {args.command}: run again with --debug for the traceback", file=sys.stderr)
        return EXIT_BAD_INPUT if bad_input else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
