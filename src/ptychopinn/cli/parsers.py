"""The commands' flags: each ``add_<command>`` adds one subcommand's parser.

Flags of configuration sections are built from the options declared on their dataclasses
(:mod:`ptychopinn.cli.flags`); the commands whose options are not a configuration section
(``inspect``, ``infer``, ``reconstruct``, ``evaluate``, ``example``) declare theirs here.
"""

from __future__ import annotations

import argparse

from ..workflows import (
    ACCELERATORS,
    GENERATOR_NAMES,
    OBJECT_KINDS,
    REFINE_LOSSES,
    SOLVERS,
    CorpusConfig,
    DataConfig,
    ExecutionConfig,
    ModelConfig,
    RefinementConfig,
    SimulationConfig,
    TrainingConfig,
    WatchOptions,
)
from .flags import (
    add_option_flags,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

_SECTIONS = (("data", DataConfig), ("model", ModelConfig), ("training", TrainingConfig),
             ("execution", ExecutionConfig))  # fmt: skip


def _solver_defaults(option: str) -> str:
    """``name value`` for every refinement solver, from the solvers' own defaults."""
    shown = {None: "by dose"}
    return ", ".join(
        f"{name} {shown.get(solver.defaults[option], solver.defaults[option])}"
        for name, solver in SOLVERS.items()
    )


def add_run_flags(parser: argparse.ArgumentParser, *, scan_data: bool = True) -> None:
    """Flags of a run's four configuration sections; each dest is ``section__field``.

    ``scan_data=False`` (``pretrain``) leaves out the flags about scan files and grouping.
    """
    groups: dict = {}
    overrides = {} if scan_data else {
        "init_from": "start from a bundle's network weights: the same architecture, or an fno bundle "
        "as the encoder of --generator unrolled",
    }  # fmt: skip
    for section, options in _SECTIONS:
        add_option_flags(
            parser, options, section=section, scan_data=scan_data, help_overrides=overrides,
            choices={"generator": GENERATOR_NAMES}, groups=groups,
        )  # fmt: skip


def add_simulate(sub: argparse._SubParsersAction) -> None:
    simulate = sub.add_parser(
        "simulate",
        help="simulate a scan and write it as NPZ or CXI",
        description="Simulate a ptychographic scan (ground truth included).",
    )
    target = simulate.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", "-o", help="output file: .npz or .cxi (.h5, .hdf5)")
    target.add_argument(
        "--stream-to", metavar="FILE",
        help="write the scan frame by frame into a growing CXI file at --rate, as a detector "
        "would (ptychopinn watch follows it)",
    )  # fmt: skip
    simulate.add_argument("--rate", type=positive_float, default=100.0, metavar="HZ",
                          help="with --stream-to: frames per second (default 100)")  # fmt: skip
    simulate.add_argument("--block", type=positive_int, default=1, metavar="FRAMES",
                          help="with --stream-to: frames per write (default 1)")  # fmt: skip
    simulate.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bar")
    add_option_flags(simulate, SimulationConfig)


def add_watch(sub: argparse._SubParsersAction) -> None:
    watch = sub.add_parser(
        "watch",
        help="reconstruct a scan while it is being written",
        description="Follow a growing HDF5/CXI file (SWMR, written by e.g. simulate --stream-to) or a "
        "folder receiving .npz frame files; predict each frame with the network and stitch it "
        "into a running mosaic at once (with --refine, refine the recent region through the "
        "physics in the background). Every --update-seconds: phase.png, amplitude.png, "
        "reconstruction.npz and a self-refreshing live.html, and one status line. Ends when the "
        "writer marks the scan complete, after --frames, or after --idle-timeout without a "
        "frame; then a final reconstruct of the received scan writes the usual outputs into "
        "OUTPUT_DIR/final.",
    )
    d = WatchOptions()
    watch.add_argument("source", metavar="SOURCE", help="a growing HDF5/CXI file or a folder of frame files")
    watch.add_argument(
        "--model",
        help="network bundle (gridsize 1) predicting each frame (default: the shipped pretrained "
        "network, when it matches the source's probe)",
    )
    watch.add_argument("--output-dir", required=True, help="folder for the live and final outputs")
    watch.add_argument(
        "--update-seconds",
        type=positive_float,
        default=d.update_seconds,
        metavar="SECONDS",
        help=f"interval of pictures and status lines (default {d.update_seconds:g})",
    )
    watch.add_argument(
        "--refine",
        action="store_true",
        help="refine the most recent frames' region through the physics in the background",
    )
    watch.add_argument(
        "--refine-probe",
        action="store_true",
        help="with --refine: the background refinement also refines the probe",
    )
    watch.add_argument(
        "--refine-window",
        type=positive_int,
        default=d.refine_window,
        metavar="FRAMES",
        help=f"frames the background refinement revisits (default {d.refine_window})",
    )
    watch.add_argument("--frames", type=positive_int, default=None, help="end after this many frames")
    watch.add_argument(
        "--idle-timeout",
        type=positive_float,
        default=d.idle_timeout_s,
        metavar="SECONDS",
        help=f"end when no frame arrived for this long: a stalled writer (default {d.idle_timeout_s:g})",
    )
    watch.add_argument(
        "--max-block",
        type=positive_int,
        default=d.max_block,
        metavar="FRAMES",
        help="most frames per network pass (default: by device and N; 128 at N = 64 on a CPU)",
    )
    watch.add_argument(
        "--final-seconds",
        type=non_negative_float,
        default=d.final_seconds,
        metavar="SECONDS",
        help=f"refinement budget of the final reconstruct; 0: none (default {d.final_seconds:g})",
    )
    watch.add_argument("--data-key", help="HDF5 source: the growing (n, N, N) counts (default: CXI's)")
    watch.add_argument(
        "--positions-key", help="HDF5 source: the growing (n, 2) (y, x) positions in object pixels"
    )
    watch.add_argument(
        "--accelerator",
        "--device",
        choices=ACCELERATORS,
        default="auto",
        help="auto (a GPU when present), cpu, gpu, cuda, mps",
    )


def add_inspect(sub: argparse._SubParsersAction) -> None:
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
        type=positive_float,
        default=None,
        help="mean photons per pattern, for NPZ files holding normalised amplitudes",
    )


def add_train(sub: argparse._SubParsersAction) -> None:
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
    add_run_flags(train)


def add_pretrain(sub: argparse._SubParsersAction) -> None:
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
    corpus.add_argument("--pattern-size", "-N", type=positive_int, default=64,
                        help="N for simulator probes (default 64; a file's probe sets its own)")  # fmt: skip
    corpus.add_argument("--samples-per-epoch", type=positive_int, default=d.samples_per_epoch,
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
    add_run_flags(pre, scan_data=False)


def add_infer(sub: argparse._SubParsersAction) -> None:
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
        type=positive_int,
        default=None,
        help="groups per forward pass (default: by device, 32 patterns on a CPU, 4096 on a GPU)",
    )
    infer.add_argument(
        "--n-groups",
        "--n_groups",
        "--n-images",
        "--n_images",
        type=positive_int,
        default=None,
        help="groups to predict (default: one per position)",
    )
    infer.add_argument(
        "--nphotons",
        type=positive_float,
        default=None,
        help="photons per pattern for NPZ files with normalised amplitudes",
    )
    infer.add_argument(
        "--data-consistency-steps",
        type=non_negative_int,
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


def add_reconstruct(sub: argparse._SubParsersAction) -> None:
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
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="training time for --train-first (default 60)",
    )
    rec.add_argument(
        "--train-config",
        metavar="FILE",
        help="with --train-first: train's YAML/JSON configuration (model, training, execution "
        "sections) for that training",
    )
    rec.add_argument(
        "--train-learning-rate",
        type=positive_float,
        metavar="LR",
        help="with --train-first: the training's AdamW learning rate (default: train's)",
    )
    rec.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop refining after this many seconds",
    )
    rec.add_argument(
        "--epochs",
        type=positive_int,
        default=d.epochs,
        help=f"maximum refinement epochs (default {d.epochs})",
    )
    rec.add_argument(
        "--optimizer",
        choices=("auto", *SOLVERS.names()),
        default=d.optimizer,
        help="auto (default: preconditioned with --refine-probe, else lbfgs), preconditioned "
        "(PIE/LSQML-class minibatch updates), lbfgs or adam",
    )
    rec.add_argument(
        "--learning-rate",
        "--lr",
        type=positive_float,
        default=None,
        help="step size (default: the solver's: " + _solver_defaults("learning_rate") + ")",
    )
    rec.add_argument(
        "--batch-size",
        type=positive_int,
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
        type=positive_int,
        default=None,
        help="with --refine-probe: grow the probe to this many incoherent modes",
    )
    rec.add_argument(
        "--probe-support-radius",
        type=positive_float,
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
        type=positive_float,
        default=d.max_position_shift_px,
        metavar="PIXELS",
        help=f"bound on position corrections (default {d.max_position_shift_px})",
    )
    rec.add_argument(
        "--tv-weight",
        type=non_negative_float,
        default=d.tv_weight,
        help="total-variation prior weight for low dose (default 0: off)",
    )
    rec.add_argument(
        "--tolerance",
        type=positive_float,
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
        type=positive_int,
        default=64,
        help="groups per network forward pass (default 64)",
    )
    rec.add_argument("--seed", type=int, default=d.seed, help="fixes minibatch order and training")
    rec.add_argument(
        "--nphotons",
        type=positive_float,
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


def add_evaluate(sub: argparse._SubParsersAction) -> None:
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
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="with --data: FRC of even/odd half reconstructions refined this long each",
    )


def add_example(sub: argparse._SubParsersAction) -> None:
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
        type=positive_int,
        default=SimulationConfig().n_positions,
        help=f"number of scan positions (default: {SimulationConfig().n_positions})",
    )
    example.add_argument("--seed", type=int, default=SimulationConfig().seed, help="random seed")
    example.add_argument("--epochs", type=positive_int, default=10, help="training epochs (default 10)")
    example.add_argument(
        "--refine-seconds",
        type=positive_float,
        default=20.0,
        help="physics refinement time budget (default 20)",
    )
