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

from .. import workflows as jobs

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
    options = jobs.SimulateOptions.from_flags(values)
    scan = jobs.simulate(jobs.SimulationConfig.from_flags(values), options)
    if scan is not None:
        size = scan.pattern_size
        print(
            f"wrote {options.output}: {scan.n_patterns} patterns of {size}x{size}, object "
            f"{scan.object.shape[0]}x{scan.object.shape[1]}, mean counts {scan.total_counts().mean():.6g}"
        )
    return 0


def _inspect(values: Values) -> int:
    options = jobs.InspectOptions.from_flags(values)
    status = 0
    for path in jobs.InspectInputs.from_flags(values).files:
        report = jobs.inspect_file(path, options)
        print(report.format_text())
        status = status or (0 if report.ok else EXIT_BAD_INPUT)
    return status


def _train(values: Values) -> int:
    inputs = jobs.TrainInputs.from_flags(values)
    config = jobs.load_run_config(inputs.config, jobs.RunConfig.flag_values(values))
    summary = jobs.train_model(
        config, inputs.output_dir, resume=inputs.resume, overwrite=values["overwrite"],
        inputs=(inputs.config,) if inputs.config else (),
    ).summary  # fmt: skip
    if jobs.is_secondary_process():
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
    inputs = jobs.TrainInputs.from_flags(values)
    given = jobs.RunConfig.flag_values(values)
    given.setdefault("training", {}).setdefault("loss", "supervised")  # the corpus knows its objects
    run = jobs.load_run_config(inputs.config, given)
    summary = jobs.pretrain_model(
        jobs.PretrainConfig.from_flags(values), run, inputs.output_dir, resume=inputs.resume,
        overwrite=values["overwrite"],
    ).summary  # fmt: skip
    print(
        f"pretrained {summary['epochs_completed']} epoch(s), {summary['global_steps']} step(s), "
        f"{summary['items_seen']} simulated items in {summary['wall_time_s']:.1f} s; "
        f"bundle {summary.get('bundle')}"
    )
    return 0


def _infer(values: Values) -> int:
    inputs = jobs.InferInputs.from_flags(values)
    result = jobs.infer_scan(
        inputs.model, inputs.data, inputs.output_dir, jobs.InferOptions.from_flags(values),
        overwrite=values["overwrite"],
    )  # fmt: skip
    print(
        f"reconstructed {inputs.data} at {result.patterns_per_second:.0f} patterns/s; "
        f"wrote {_files_written(result.files)} to {inputs.output_dir}"
    )
    _print_comparison(result.comparison)
    return 0


def _reconstruct(values: Values) -> int:
    inputs = jobs.ReconstructInputs.from_flags(values)
    result = jobs.reconstruct_file(
        inputs.data, inputs.output_dir, jobs.ReconstructOptions.from_flags(values),
        overwrite=values["overwrite"],
    )  # fmt: skip
    print(
        f"reconstructed {inputs.data} ({result.start} start) in {result.timings['total_s']:.1f} s; "
        f"wrote {_files_written(result.files)} to {inputs.output_dir}"
    )
    _print_comparison(result.comparison)
    return 0


def _evaluate(values: Values) -> int:
    inputs = jobs.EvaluateInputs.from_flags(values)
    result = jobs.evaluate_reconstruction(
        inputs.reconstruction, inputs.output_dir, jobs.EvaluateOptions.from_flags(values),
        overwrite=values["overwrite"],
    )  # fmt: skip
    _print_comparison(result.comparison)
    if "data_fidelity" in result.metrics:
        print(f"data fidelity: {result.metrics['data_fidelity']}")
    print(f"wrote {_files_written(result.files)} to {inputs.output_dir}")
    return 0


def _watch(values: Values) -> int:
    inputs = jobs.WatchInputs.from_flags(values)
    result = jobs.watch_scan(
        inputs.source, inputs.output_dir, jobs.WatchOptions.from_flags(values), overwrite=values["overwrite"]
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
    inputs = jobs.ExampleInputs.from_flags(values)
    options = jobs.ExampleOptions.from_flags(values)
    result = jobs.run_example(inputs.output_dir, options, overwrite=values["overwrite"])
    return 0 if result.ok else 1


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one line of help, the options classes its flags come from
    (the first one's docstring is the command's description), and its action.

    Each class's flags have its fields' names as destinations (a class's nested options add
    theirs, ``refinement__epochs``). ``scan_data`` False leaves out the flags about scan
    files and grouping (``pretrain``).
    """

    name: str
    help: str
    options: tuple[type[jobs.Options], ...]
    run: Callable[[Values], int]
    writes_folder: bool = True
    scan_data: bool = True
    help_overrides: tuple[tuple[str, str], ...] = ()
    about: str = ""

    @property
    def description(self) -> str:
        """``about``, else the first paragraph of the first options class's docstring."""
        return self.about or " ".join((self.options[0].__doc__ or "").split("\n\n")[0].split())


COMMANDS: tuple[Command, ...] = (
    Command("simulate", "simulate a scan and write it as NPZ or CXI",
            (jobs.SimulateOptions, jobs.SimulationConfig), _simulate, writes_folder=False),
    Command("inspect", "show what a scan file or model bundle holds and what is wrong with it",
            (jobs.InspectInputs, jobs.InspectOptions), _inspect, writes_folder=False),
    Command("train", "train the physics-informed network on a scan",
            (jobs.TrainInputs, jobs.RunConfig), _train),
    Command("pretrain", "pretrain a network for a probe on a corpus simulated on the fly",
            (jobs.PretrainConfig, jobs.TrainInputs, jobs.RunConfig), _pretrain, scan_data=False,
            about="Train one network per beamline set-up: many simulated objects (classes, phase ranges, "
            "absorption, photon counts, scan steps) through the given probe, never written to disk; "
            "validation on a fixed held-out set; the usual bundle at the end. One epoch is "
            "--samples-per-epoch items; stop with --epochs, --time-budget or --max-steps. The loss "
            "defaults to supervised (the corpus knows its objects).",
            help_overrides=(
                ("config", "YAML or JSON file with model/training/execution sections"),
                ("resume", "continue from a checkpoint (like train)"),
                ("init_from", "start from a bundle's network weights: the same architecture, or an fno "
                              "bundle as the encoder of --generator unrolled"),
            )),
    Command("infer", "reconstruct a scan with a trained model bundle",
            (jobs.InferInputs, jobs.InferOptions), _infer),
    Command("reconstruct", "reconstruct a scan: network prediction (optional), then physics refinement",
            (jobs.ReconstructInputs, jobs.ReconstructOptions), _reconstruct),
    Command("evaluate", "judge a reconstruction against a ground truth and/or its data",
            (jobs.EvaluateInputs, jobs.EvaluateOptions), _evaluate),
    Command("watch", "reconstruct a scan while it is being written",
            (jobs.WatchInputs, jobs.WatchOptions), _watch),
    Command("example", "run the built-in example end to end",
            (jobs.ExampleInputs, jobs.ExampleOptions), _example),
)  # fmt: skip
