"""The commands: a table of what each one is called, which options it takes, and what it does.

Every command's flags come from its options classes (:mod:`ptychopinn.cli.flags`); its
``run`` builds those options from the flags given (``Options.from_flags``), calls one job of
:mod:`ptychopinn.workflows` with them, and prints one line saying what it wrote. Errors are
turned into messages by :func:`ptychopinn.cli.main.main`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..workflows import (
    EvaluateInputs,
    EvaluateOptions,
    ExampleInputs,
    ExampleOptions,
    InferInputs,
    InferOptions,
    InspectInputs,
    InspectOptions,
    Options,
    PretrainConfig,
    ReconstructInputs,
    ReconstructOptions,
    RunConfig,
    SimulateOptions,
    SimulationConfig,
    TrainInputs,
    WatchInputs,
    WatchOptions,
    evaluate_reconstruction,
    infer_scan,
    inspect_file,
    is_secondary_process,
    load_run_config,
    pretrain_model,
    reconstruct_file,
    run_example,
    simulate,
    train_model,
    watch_scan,
)

#: Exit statuses: bad input (a file, a key, a value, a flag), a failure while running, and a
#: training stopped by SIGINT/SIGTERM after saving a checkpoint (continue with --resume last).
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 3

Values = dict[str, Any]


# --- what each command does ---------------------------------------------------------------


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


def _simulate(values: Values) -> int:
    options = SimulateOptions.from_flags(values)
    scan = simulate(SimulationConfig.from_flags(values), options)
    if scan is not None:
        size = scan.pattern_size
        print(
            f"wrote {options.output}: {scan.n_patterns} patterns of {size}x{size}, object "
            f"{scan.object.shape[0]}x{scan.object.shape[1]}, mean counts {scan.total_counts().mean():.6g}"
        )
    return 0


def _inspect(values: Values) -> int:
    options = InspectOptions.from_flags(values)
    status = 0
    for path in InspectInputs.from_flags(values).files:
        report = inspect_file(path, options)
        print(report.format_text())
        status = status or (0 if report.ok else EXIT_BAD_INPUT)
    return status


def _train(values: Values) -> int:
    inputs = TrainInputs.from_flags(values)
    config = load_run_config(inputs.config, RunConfig.flag_values(values))
    summary = train_model(
        config, inputs.output_dir, resume=inputs.resume, overwrite=values["overwrite"],
        inputs=(inputs.config,) if inputs.config else (),
    ).summary  # fmt: skip
    if is_secondary_process():
        return 0  # one final line per run, not one per process
    print(
        f"trained {summary['epochs_completed']} epoch(s), {summary['global_steps']} step(s) in "
        f"{summary['wall_time_s']:.1f} s; outputs in {inputs.output_dir}"
    )
    if summary["interrupted"]:
        print(
            "interrupted by a signal: checkpoint and bundle saved; continue with --resume last",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


def _pretrain(values: Values) -> int:
    inputs = TrainInputs.from_flags(values)
    given = RunConfig.flag_values(values)
    given.setdefault("training", {}).setdefault("loss", "supervised")  # the corpus knows its objects
    run = load_run_config(inputs.config, given)
    summary = pretrain_model(
        PretrainConfig.from_flags(values), run, inputs.output_dir, resume=inputs.resume,
        overwrite=values["overwrite"],
    ).summary  # fmt: skip
    print(
        f"pretrained {summary['epochs_completed']} epoch(s), {summary['global_steps']} step(s), "
        f"{summary['items_seen']} simulated items in {summary['wall_time_s']:.1f} s; "
        f"bundle {summary.get('bundle')}"
    )
    return 0


def _infer(values: Values) -> int:
    inputs = InferInputs.from_flags(values)
    result = infer_scan(
        inputs.model, inputs.data, inputs.output_dir, InferOptions.from_flags(values),
        overwrite=values["overwrite"],
    )  # fmt: skip
    print(
        f"reconstructed {inputs.data} at {result.patterns_per_second:.0f} patterns/s; "
        f"wrote {_files_written(result.files)} to {inputs.output_dir}"
    )
    _print_comparison(result.comparison)
    return 0


def _reconstruct(values: Values) -> int:
    inputs = ReconstructInputs.from_flags(values)
    result = reconstruct_file(
        inputs.data, inputs.output_dir, ReconstructOptions.from_flags(values), overwrite=values["overwrite"]
    )
    print(
        f"reconstructed {inputs.data} ({result.start} start) in {result.timings['total_s']:.1f} s; "
        f"wrote {_files_written(result.files)} to {inputs.output_dir}"
    )
    _print_comparison(result.comparison)
    return 0


def _evaluate(values: Values) -> int:
    inputs = EvaluateInputs.from_flags(values)
    result = evaluate_reconstruction(
        inputs.reconstruction, inputs.output_dir, EvaluateOptions.from_flags(values),
        overwrite=values["overwrite"],
    )  # fmt: skip
    _print_comparison(result.comparison)
    if "data_fidelity" in result.metrics:
        print(f"data fidelity: {result.metrics['data_fidelity']}")
    print(f"wrote {_files_written(result.files)} to {inputs.output_dir}")
    return 0


def _watch(values: Values) -> int:
    inputs = WatchInputs.from_flags(values)
    result = watch_scan(
        inputs.source, inputs.output_dir, WatchOptions.from_flags(values), overwrite=values["overwrite"]
    )
    summary = result.summary
    live = {name: path for name, path in result.files.items() if "/" not in name}
    final = ""
    if result.final is not None:
        final = f"; the final reconstruction in {result.final.files['reconstruction.npz'].parent}"
    print(
        f"watched {summary['frames_reconstructed']} frame(s) in {summary['elapsed_s']:.1f} s"
        f"{' (the writer stalled)' if summary['stalled'] else ''}; wrote {_files_written(live)} "
        f"to {inputs.output_dir}{final}"
    )
    return 0


def _example(values: Values) -> int:
    inputs = ExampleInputs.from_flags(values)
    result = run_example(inputs.output_dir, ExampleOptions.from_flags(values), overwrite=values["overwrite"])
    return 0 if result.ok else 1


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and help, the options classes its flags come from, its action.

    ``options`` pairs each class with the destination prefix of its flags (None: the fields'
    own names; a class's nested options add theirs, ``refinement__epochs``). ``scan_data``
    False leaves out the flags about scan files and grouping (``pretrain``).
    """

    name: str
    help: str
    description: str
    options: tuple[type[Options], ...]
    run: Callable[[Values], int]
    writes_folder: bool = True
    scan_data: bool = True
    help_overrides: tuple[tuple[str, str], ...] = ()


COMMANDS: tuple[Command, ...] = (
    Command(
        "simulate", "simulate a scan and write it as NPZ or CXI",
        "Simulate a ptychographic scan (ground truth included).",
        (SimulateOptions, SimulationConfig), _simulate, writes_folder=False,
    ),
    Command(
        "inspect", "show what a scan file or model bundle holds and what is wrong with it",
        "Read scan files, check every value, report contents and problems. Exits 2 when any file "
        "has a problem.", (InspectInputs, InspectOptions), _inspect, writes_folder=False,
    ),
    Command(
        "train", "train the physics-informed network on a scan",
        "Self-supervised training through the forward model. Precedence: defaults < --config "
        "file < flags. Writes config.yaml, checkpoints/, logs and training_summary.json to "
        "--output-dir.", (TrainInputs, RunConfig), _train,
    ),
    Command(
        "pretrain", "pretrain a network for a probe on a corpus simulated on the fly",
        "Train one network per beamline set-up: many simulated objects (classes, phase ranges, "
        "absorption, photon counts, scan steps) through the given probe, never written to disk; "
        "validation on a fixed held-out set; the usual bundle at the end. One epoch is "
        "--samples-per-epoch items; stop with --epochs, --time-budget or --max-steps. The loss "
        "defaults to supervised (the corpus knows its objects).",
        (TrainInputs, PretrainConfig, RunConfig), _pretrain, scan_data=False,
        help_overrides=(
            ("config", "YAML or JSON file with model/training/execution sections"),
            ("resume", "continue from a checkpoint (like train)"),
            ("init_from", "start from a bundle's network weights: the same architecture, or an fno "
                          "bundle as the encoder of --generator unrolled"),
        ),
    ),  # fmt: skip
    Command(
        "infer", "reconstruct a scan with a trained model bundle",
        "Group positions as in training, predict patches in batches, stitch the full object. "
        "Writes reconstruction.npz, amplitude/phase TIFF and PNG, metrics.json when the data "
        "hold a ground truth, inference.json.", (InferInputs, InferOptions), _infer,
    ),
    Command(
        "reconstruct", "reconstruct a scan: network prediction (optional), then physics refinement",
        "The one command for a scan. With --model: the network's prediction, refined through the "
        "forward model. Without: the prediction of a shipped pretrained network made for the "
        "scan's probe, if there is one (--no-pretrained: never), else a flat object, optionally "
        "after a short training on the scan (--train-first). Writes the outputs of infer plus "
        "the refined probe and positions (in reconstruction.npz), the loss curve (loss.json, "
        "loss.png) and reconstruct.json.", (ReconstructInputs, ReconstructOptions), _reconstruct,
    ),
    Command(
        "evaluate", "judge a reconstruction against a ground truth and/or its data",
        "With --ground-truth: aligned metrics (MAE, PSNR and SSIM with an explicit data range, "
        "Pearson, FRC with the 1/2-bit threshold) for amplitude and phase, metrics.json and "
        "comparison.png. With --data: the Poisson NLL and deviance of the data under the "
        "reconstruction, and with --half-scan-seconds the FRC of even/odd half-scan "
        "reconstructions.", (EvaluateInputs, EvaluateOptions), _evaluate,
    ),
    Command(
        "watch", "reconstruct a scan while it is being written",
        "Follow a growing HDF5/CXI file (SWMR, written by e.g. simulate --stream-to) or a folder "
        "receiving .npz frame files; predict each frame with the network and stitch it into a "
        "running mosaic at once (with --refine, refine the recent region through the physics in "
        "the background). Every --update-seconds: phase.png, amplitude.png, reconstruction.npz "
        "and a self-refreshing live.html, and one status line. Ends when the writer marks the "
        "scan complete, after --frames, or after --idle-timeout without a frame; then a final "
        "reconstruct of the received scan writes the usual outputs into OUTPUT_DIR/final.",
        (WatchInputs, WatchOptions), _watch,
    ),
    Command(
        "example", "run the built-in example end to end",
        "Simulate a scan, write NPZ and CXI, inspect them, train the network briefly, reconstruct "
        "the scan and write pictures and metrics.", (ExampleInputs, ExampleOptions), _example,
    ),
)  # fmt: skip
