"""What each command does with its parsed flags: one ``run_<command>`` per subcommand.

Every handler calls one job of :mod:`ptychopinn.workflows` and prints one line saying what it
wrote; errors are turned into messages by :func:`ptychopinn.cli.main.main`.
"""

from __future__ import annotations

import argparse
import sys

from ..workflows import (
    CorpusConfig,
    ExecutionConfig,
    PretrainConfig,
    RefinementConfig,
    SimulationConfig,
    WatchOptions,
    evaluate_reconstruction,
    infer_scan,
    inspect_file,
    is_secondary_process,
    load_run_config,
    option_fields,
    pretrain_model,
    reconstruct_file,
    run_example,
    simulate_to_file,
    stream_to_file,
    train_model,
    watch_scan,
)
from .flags import given_sections, given_values

#: Exit statuses: bad input (a file, a key, a value, a flag), a failure while running, and a
#: training stopped by SIGINT/SIGTERM after saving a checkpoint (continue with --resume last).
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 3
_SIMULATION_FIELDS = tuple(field.name for field in option_fields(SimulationConfig))


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
    config = SimulationConfig(**given_values(args, _SIMULATION_FIELDS))
    if args.stream_to:
        stream_to_file(config, args.stream_to, rate_hz=args.rate, block=args.block)
        return 0
    scan = simulate_to_file(config, args.output, progress=False if args.no_progress else None)
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
    config = load_run_config(args.config, given_sections(args))
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
        train_time_budget_s=args.train_time_budget, refinement=refinement, train_config=args.train_config,
        train_overrides={"execution": {"learning_rate": args.train_learning_rate}}
        if args.train_learning_rate else None,
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
    config = SimulationConfig().replace(n_positions=args.n_positions, seed=args.seed)
    result = run_example(
        args.output_dir,
        config,
        epochs=args.epochs,
        refine_seconds=args.refine_seconds,
        overwrite=args.overwrite,
    )
    return 0 if result.ok else 1


def _pretrain(args: argparse.Namespace) -> int:
    overrides = given_sections(args)
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


def _watch(args: argparse.Namespace) -> int:
    options = WatchOptions(
        model=args.model, update_seconds=args.update_seconds, refine=args.refine,
        refine_probe=args.refine_probe,
        refine_window=args.refine_window, frames=args.frames, idle_timeout_s=args.idle_timeout,
        max_block=args.max_block, final_seconds=args.final_seconds, accelerator=args.accelerator,
    )  # fmt: skip
    result = watch_scan(
        args.source, args.output_dir, options, overwrite=args.overwrite,
        data_key=args.data_key, positions_key=args.positions_key,
    )  # fmt: skip
    summary = result.summary
    live = {name: path for name, path in result.files.items() if "/" not in name}
    final = ""
    if result.final is not None:
        final = f"; the final reconstruction in {result.final.files['reconstruction.npz'].parent}"
    print(
        f"watched {summary['frames_reconstructed']} frame(s) in {summary['elapsed_s']:.1f} s"
        f"{' (the writer stalled)' if summary['stalled'] else ''}; wrote {_files_written(live)} "
        f"to {args.output_dir}{final}"
    )
    return 0


COMMANDS = {
    "simulate": _simulate,
    "inspect": _inspect,
    "pretrain": _pretrain,
    "train": _train,
    "infer": _infer,
    "reconstruct": _reconstruct,
    "evaluate": _evaluate,
    "example": _example,
    "watch": _watch,
}
