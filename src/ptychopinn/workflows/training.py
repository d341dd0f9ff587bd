"""Workflow: train the physics-informed network on a scan (``ptychopinn train``).

Every field of the run configuration reaches the object that uses it: data fields the
grouping and datasets, model fields the network, training fields the loss and the Trainer's
budget, execution fields the Trainer, the DataLoaders and the optimiser (see
``docs/configuration.md``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ..common import output_dir_option
from ..config import RunConfig
from ..data import (
    GroupedDiffraction,
    group_positions,
    holdout_mask,
    input_scale,
    make_dataloader,
    split_positions,
)
from ..data.binning import bin_scan
from ..io import Scan, read_scan, write_json, write_text
from ..models import PINNModule, build_module
from ..options import Options, option
from .bundles import load_model_bundle, save_model_bundle
from .geometry import with_scan_geometry
from .lightning_runs import (
    build_trainer,
    check_execution_fits_machine,
    checkpoint_paths,
    final_metrics,
    load_pretrained_weights,
    metrics_csv_of,
    resolve_resume,
)
from .report import training_curves, write_report
from .results import TrainResult
from .run_folder import claim_output_folder
from .signals import GracefulStop

log = logging.getLogger("ptychopinn")

#: Probe power may differ from the mean counts by this factor before ``auto`` rescales it.
_CALIBRATION_TOLERANCE = 2.0


@dataclass
class TrainingData:
    """Everything the Trainer is fed, built from the data configuration."""

    scan: Scan
    train: GroupedDiffraction
    validation: GroupedDiffraction | None
    scale: float
    probe: np.ndarray
    mean_counts: float  # mean total counts per training pattern: the photon scale
    notes: list[str] = field(default_factory=list)


def calibrated_probe(scan: Scan, mean_counts: float, mode: str) -> tuple[np.ndarray, str | None]:
    """Scale the probe so ``sum |P|^2`` equals the mean counts per pattern.

    See docs/conventions.md, "Forward model".

    ``mode``: ``none`` never, ``mean_counts`` always, ``auto`` when they differ by more than
    a factor of two. Returns the probe and a note saying what was done (or None).
    """
    probe = scan.probe_modes.astype(np.complex64)
    power = float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))
    ratio = power / mean_counts
    rescale = mode == "mean_counts" or (
        mode == "auto" and not 1 / _CALIBRATION_TOLERANCE <= ratio <= _CALIBRATION_TOLERANCE
    )
    if not rescale:
        return probe, None
    note = (
        f"probe power {power:.4g} was {ratio:.3g} x the mean counts per pattern {mean_counts:.4g}; "
        "rescaled to match (model.probe_calibration)"
    )
    return (probe / np.sqrt(ratio)).astype(np.complex64), note


def read_probe_file(path: str | os.PathLike, size: int) -> np.ndarray:
    """Probe modes ``(modes, N, N)`` complex64 from a reconstruction, a scan or a ``.npy`` file.

    Raises
    ------
    ValueError
        No probe in the file, or one of another size than the patterns.
    """
    from ..io import ScanFileError, ScanValidationError
    from ..simulate.probes import probe_modes_from_file

    source = os.fspath(path)
    try:
        probe = probe_modes_from_file(source)
    except (ScanFileError, ScanValidationError) as exc:
        raise ValueError(f"data.probe = {source!r}: {exc}") from None
    probe = np.asarray(probe)
    if probe.ndim == 2:
        probe = probe[None]
    if probe.ndim != 3 or probe.shape[-2:] != (size, size) or probe.dtype.kind not in "fc":
        raise ValueError(
            f"data.probe = {source!r}: shape {probe.shape} of {probe.dtype} is not (N, N) or "
            f"(modes, N, N) with N = {size} (the pattern size)"
        )
    if not np.isfinite(probe).all() or not np.any(probe):
        raise ValueError(f"data.probe = {source!r}: the probe is zero or not finite")
    return probe.astype(np.complex64)


def _groups_for(scan: Scan, subset: np.ndarray, config: RunConfig, seed: int):
    data = config.data
    groups = group_positions(scan.positions[subset], data.gridsize, data.n_groups, data.k_neighbors, seed)
    # the grouping ran on the subset: map its indices back to the scan's patterns
    return type(groups)(indices=subset[groups.indices], offsets=groups.offsets, centroids=groups.centroids)


def prepare_training_data(config: RunConfig) -> TrainingData:
    """Read the scans, split, group, normalise and calibrate, as the configuration says."""
    data, seed = config.data, config.execution.seed
    if data.train_data is None:
        raise ValueError("data.train_data: no training scan given (--train-data FILE)")
    scan = read_scan(data.train_data, photons_per_pattern=data.photons_per_pattern)
    if data.probe is not None:
        scan = scan.replace(probe=read_probe_file(data.probe, scan.pattern_size))
    if data.detector_bin > 1:
        full = scan.pattern_size
        scan = bin_scan(scan, data.detector_bin)
    supervised = config.training.loss == "supervised"
    notes: list[str] = []
    if data.detector_bin > 1:
        notes.append(
            f"detector binned by {data.detector_bin}: {full} -> {scan.pattern_size} pixels per pattern, "
            f"counts kept, object pixel unchanged, field of view {scan.pattern_size} object pixels "
            "(data.detector_bin)"
        )
    if data.test_data is not None:
        train_idx = np.arange(scan.n_patterns)
        val_scan = bin_scan(
            read_scan(data.test_data, photons_per_pattern=data.photons_per_pattern), data.detector_bin
        )
        if val_scan.pattern_size != scan.pattern_size:
            raise ValueError(
                f"{data.test_data}: patterns are {val_scan.pattern_size} pixels, the training "
                f"scan's are {scan.pattern_size}"
            )
        val_idx = np.arange(val_scan.n_patterns)
    else:
        train_idx, val_idx = split_positions(scan.n_patterns, data.val_fraction, seed)
        val_scan = scan
    if data.holdout_region is not None:
        held_out = holdout_mask(scan.positions, data.holdout_region)
        train_idx = train_idx[~held_out[train_idx]]
        if val_scan is scan:
            val_idx = val_idx[~held_out[val_idx]]
        notes.append(
            f"holdout region {data.holdout_region}: {int(held_out.sum())} of {scan.n_patterns} positions "
            "never used in training or validation (infer --held-out reconstructs them)"
        )
    channels = data.channels
    if len(train_idx) < channels:
        raise ValueError(
            f"gridsize {data.gridsize} needs {channels} training positions, got {len(train_idx)}"
        )
    totals = scan.total_counts()  # one pass over the (possibly lazily read) data
    scale = input_scale(scan, train_idx, totals=totals)
    mean_counts = float(totals[train_idx].mean())
    probe, note = calibrated_probe(scan, mean_counts, config.model.probe_calibration)
    if note:
        notes.append(note)
    train = GroupedDiffraction(scan, _groups_for(scan, train_idx, config, seed), scale, with_truth=supervised)
    validation = None
    if len(val_idx) >= channels:
        validation = GroupedDiffraction(
            val_scan, _groups_for(val_scan, val_idx, config, seed + 1), scale, with_truth=supervised
        )
    elif len(val_idx):
        notes.append(f"validation skipped: {len(val_idx)} position(s) cannot form a group of {channels}")
    return TrainingData(
        scan=scan, train=train, validation=validation, scale=scale, probe=probe, mean_counts=mean_counts,
        notes=notes,
    )  # fmt: skip


def with_architecture_of(config: RunConfig, pretrained: Any) -> RunConfig:
    """``config`` with the network architecture (model section) of a pretrained bundle.

    Raises
    ------
    ValueError
        The bundle was trained with another gridsize.
    """
    if pretrained.gridsize != config.data.gridsize:
        raise ValueError(
            f"training.init_from = {config.training.init_from}: the model was trained with gridsize "
            f"{pretrained.gridsize}, this run asks for {config.data.gridsize} (--gridsize)"
        )
    architecture = pretrained.config.to_dict()["model"]
    own = config.to_dict()["model"]
    for name in ("probe_trainable", "probe_calibration"):  # about the data, not the network
        architecture[name] = own[name]
    return config.updated({"model": architecture}, source=f"{config.training.init_from}: model")


def train(
    config: RunConfig,
    output_dir: str | Path,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    command: str = "train",
    inputs: tuple[str | os.PathLike, ...] = (),
) -> TrainResult:
    """Train the physics-informed network as configured; outputs go to ``output_dir``.

    Writes ``config.yaml`` (the effective configuration) first, Lightning checkpoints under
    ``checkpoints/`` while training (``last.ckpt`` always; the best by the monitored metric),
    logs under the chosen logger's folder, and at the end the model bundle ``model.zip``
    (plus ``model_best.zip`` from the best checkpoint when there is validation data) and
    ``training_summary.json``.

    Parameters
    ----------
    config : RunConfig
    output_dir : str or Path
    resume : str or Path, optional
        A checkpoint to continue from; ``"last"`` for ``output_dir/checkpoints/last.ckpt``;
        ``"auto"`` for that file when it exists (else a fresh start: for requeued jobs).
        Only this folder's own run is resumed (see :mod:`.run_folder`).
    overwrite : bool
        Replace the outputs of an earlier run in ``output_dir`` (refused otherwise).
    command, inputs
        The command named in the folder's run record, and files read besides the
        configuration's (a ``--config`` file): none of them may be written.
    """
    pretrained = None
    if config.training.init_from is not None:
        pretrained = load_model_bundle(config.training.init_from)
        config = with_architecture_of(config, pretrained)
    execution = config.execution
    check_execution_fits_machine(execution)
    resume_path = resolve_resume(resume, Path(output_dir))
    L.seed_everything(execution.seed, workers=True, verbose=False)
    data = prepare_training_data(config)  # bad input fails here, before anything is written
    config = with_scan_geometry(config, data.scan)
    output_dir = claim_output_folder(
        output_dir, command=command, overwrite=overwrite, resume=resume is not None,
        inputs=[config.data.train_data, config.data.test_data, config.data.probe, config.training.init_from,
                *inputs],
    )  # fmt: skip
    write_text(output_dir / "config.yaml", config.to_yaml())
    for note in data.notes:
        log.warning(note)
    has_validation = data.validation is not None
    scan = data.scan
    module = build_module(
        config,
        size=scan.pattern_size,
        probe_modes=data.probe.shape[0],
        monitor=execution.resolved_monitor(has_validation),
        input_scale=data.scale,
        probe=torch.from_numpy(data.probe),
        mask=None if scan.mask is None else torch.from_numpy(scan.mask),
    )
    if pretrained is not None:
        load_pretrained_weights(module, pretrained, f"training.init_from = {config.training.init_from}")
    loader_options = dict(
        batch_size=execution.batch_size,
        num_workers=execution.num_workers,
        pin_memory=execution.pin_memory,
        seed=execution.seed,
    )
    train_loader = make_dataloader(data.train, shuffle=True, **loader_options)
    val_loader = make_dataloader(data.validation, shuffle=False, **loader_options) if has_validation else None
    trainer = build_trainer(execution, config.training, output_dir, has_validation)

    started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_path)
    elapsed = time.perf_counter() - started

    summary, best_bundle = _write_outputs(config, data, module, trainer, output_dir, elapsed)
    best, last = checkpoint_paths(trainer)
    return TrainResult(
        output_dir=output_dir,
        config=config,
        trainer=trainer,
        module=module,
        train_loader=train_loader,
        val_loader=val_loader,
        best_checkpoint=best,
        last_checkpoint=last,
        summary=summary,
        bundle=output_dir / "model.zip" if trainer.is_global_zero else None,
        best_bundle=best_bundle,
    )


def _write_outputs(
    config: RunConfig,
    data: TrainingData,
    module: PINNModule,
    trainer: L.Trainer,
    output_dir: Path,
    elapsed: float,
) -> tuple[dict[str, Any], Path | None]:
    """The bundles, ``training_summary.json`` and the report of a finished run (rank 0 writes).

    Returns the summary and the best checkpoint's bundle (None without one).
    """
    has_validation = data.validation is not None
    best, last = checkpoint_paths(trainer)
    metrics = final_metrics(trainer)
    stopper = next((cb for cb in trainer.callbacks if isinstance(cb, GracefulStop)), None)
    interrupted = bool(stopper and stopper.interrupted)
    if interrupted:
        log.warning("training stopped by a signal; checkpoint saved: continue with --resume last")
    summary = {
        "interrupted": interrupted,
        "epochs_completed": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "train_groups": len(data.train),
        "validation_groups": len(data.validation) if has_validation else 0,
        "input_scale": data.scale,
        "wall_time_s": elapsed,
        "metrics": metrics,
        "best_checkpoint": str(best) if best else None,
        "last_checkpoint": str(last) if last else None,
        "notes": data.notes,
    }
    bundle, best_bundle = output_dir / "model.zip", None
    if trainer.is_global_zero:
        facts = dict(
            photon_scale=data.mean_counts,
            training_data=config.data.train_data,
            epochs_completed=trainer.current_epoch,
        )
        save_model_bundle(module, bundle, config, **facts)
        if has_validation and best is not None and best.is_file():
            best_bundle = output_dir / "model_best.zip"
            best_module = PINNModule.load_from_checkpoint(best, map_location="cpu")
            save_model_bundle(best_module, best_bundle, config, **facts, checkpoint=best.name)
        summary["bundle"] = str(bundle)
        summary["best_bundle"] = str(best_bundle) if best_bundle else None
        write_json(output_dir / "training_summary.json", summary)
        curves = training_curves(output_dir, metrics_csv_of(trainer))
        write_report(
            output_dir,
            f"Training on {Path(config.data.train_data).name}",
            images=[("loss per epoch", curves)] if curves else [],
            metrics=summary["metrics"],
            config=config.to_dict(),
            details={k: v for k, v in summary.items() if k != "metrics"},
        )
    return summary, best_bundle


@dataclass(frozen=True)
class TrainInputs(Options):
    """Self-supervised training through the forward model. Precedence: defaults < --config
    file < flags. Writes config.yaml, checkpoints/, logs and training_summary.json to
    --output-dir."""

    section = "train"
    output_dir: str = output_dir_option("folder for all outputs")
    config: str | None = option(
        None, "YAML or JSON file with data/model/training/execution sections", flags=("--config",),
        path=True, metavar="CONFIG",
    )  # fmt: skip
    resume: str | None = option(
        None, "continue from a checkpoint; 'last': OUTPUT_DIR/checkpoints/last.ckpt; 'auto': it, if present",
        flags=("--resume",), metavar="PATH",
    )  # fmt: skip
