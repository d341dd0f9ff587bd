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
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from ..config import ExecutionConfig, RunConfig, TrainingConfig
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
from .bundles import load_model_bundle, save_model_bundle
from .report import training_curves, write_report
from .results import TrainResult
from .run_folder import AtomicCheckpointIO, claim_output_folder
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


def build_logger(execution: ExecutionConfig, output_dir: Path):
    """The Lightning logger named by ``execution.logger`` (False for ``none``)."""
    kind = execution.logger
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=output_dir, name="logs")
    if kind == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ModuleNotFoundError as exc:
            raise ValueError(
                f"execution.logger = 'tensorboard' needs the tensorboard extra ({exc}); "
                "pip install 'ptychopinn[tensorboard]'"
            ) from None
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=output_dir, name="tensorboard")
    if kind == "mlflow":
        try:
            import alembic  # noqa: F401  (the local SQLite store needs it and sqlalchemy)
            import mlflow  # noqa: F401
            import sqlalchemy  # noqa: F401
            from lightning.pytorch.loggers import MLFlowLogger
        except ModuleNotFoundError as exc:
            raise ValueError(
                f"execution.logger = 'mlflow' needs the mlflow extra ({exc}); "
                "pip install 'ptychopinn[mlflow]'"
            ) from None
        if execution.mlflow_tracking_uri is not None:
            # bounded requests: MLflow's defaults (120 s, 7 retries with back-off) hang a run
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(MLFLOW_TIMEOUT_S * 2)))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            return MLFlowLogger(experiment_name="ptychopinn", tracking_uri=execution.mlflow_tracking_uri)
        # a local SQLite store (MLflow's file store is deprecated); artifacts beside it
        return MLFlowLogger(
            experiment_name="ptychopinn",
            tracking_uri="sqlite:///" + os.fspath((output_dir / "mlflow.db").resolve()),
            artifact_location=(output_dir / "mlflow-artifacts").resolve().as_uri(),
        )
    raise ValueError(f"unknown logger {kind!r}")  # guarded by ExecutionConfig


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


def load_pretrained_weights(module: PINNModule, pretrained: Any, origin: str) -> None:
    """Start ``module``'s network from a loaded bundle's weights.

    The architectures must agree, except that an ``fno`` network may become the per-pattern
    encoder of an ``unrolled`` one (whose physics steps then start as plain projections).

    Raises
    ------
    ValueError
        The patch sizes differ, or the weights do not fit the network.
    """
    size = int(module.hparams.size)
    if pretrained.pattern_size != size:
        raise ValueError(
            f"{origin}: the model takes {pretrained.pattern_size}-pixel patterns, this run has {size}"
        )
    source = pretrained.module.net.generator
    target = module.net.generator.pretrained_target(source)
    try:
        target.load_state_dict(source.state_dict())
    except RuntimeError as exc:
        raise ValueError(
            f"{origin}: its {type(source).__name__} weights do not fit this run's "
            f"{type(module.net.generator).__name__} ({str(exc).splitlines()[0]})"
        ) from None
    log.info("network weights from %s", origin)


def build_trainer(
    execution: ExecutionConfig, training: TrainingConfig, output_dir: Path, has_validation: bool
) -> L.Trainer:
    """A Trainer carrying every execution field (accelerator ... early stopping)."""
    monitor = execution.resolved_monitor(has_validation)
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best-{epoch:03d}",
        monitor=monitor,
        mode="min",
        save_top_k=execution.save_top_k,
        every_n_epochs=execution.checkpoint_every_n_epochs,
        save_last=True,
    )
    callbacks: list[Any] = [checkpoint, GracefulStop(output_dir / "checkpoints" / "last.ckpt")]
    if execution.early_stopping_patience is not None:
        callbacks.append(
            EarlyStopping(monitor=monitor, mode="min", patience=execution.early_stopping_patience)
        )
    return L.Trainer(
        accelerator=execution.accelerator,
        devices=list(execution.devices) if isinstance(execution.devices, tuple) else execution.devices,
        num_nodes=execution.num_nodes,
        strategy=execution.strategy,
        precision=execution.precision,
        deterministic=execution.deterministic,
        gradient_clip_val=execution.gradient_clip_val,
        gradient_clip_algorithm=execution.gradient_clip_algorithm,
        accumulate_grad_batches=execution.accumulate_grad_batches,
        max_epochs=training.epochs,
        max_time=timedelta(seconds=training.time_budget_s) if training.time_budget_s else None,
        max_steps=training.max_steps if training.max_steps is not None else -1,
        logger=build_logger(execution, output_dir),
        enable_progress_bar=execution.progress_bar,
        enable_model_summary=execution.progress_bar,
        log_every_n_steps=execution.log_every_n_steps,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=output_dir,
        num_sanity_val_steps=0,
    )


def metrics_csv_of(trainer: L.Trainer) -> Path | None:
    """The CSV file this run's logger writes (None for other loggers or none)."""
    from lightning.pytorch.loggers import CSVLogger

    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            return Path(logger.log_dir) / "metrics.csv"
    return None


def checkpoint_paths(trainer: L.Trainer) -> tuple[Path | None, Path | None]:
    """The best and the last checkpoint the Trainer wrote (None where it wrote none)."""
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint and checkpoint.best_model_path else None
    last = Path(checkpoint.last_model_path) if checkpoint and checkpoint.last_model_path else None
    return best, last


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The scalar metrics logged last (train_loss, val_loss, ...) as plain floats."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}




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
        bundle=bundle if trainer.is_global_zero else None,
        best_bundle=best_bundle,
    )


def _complete_checkpoint(path: Path) -> bool:
    """True for a whole checkpoint file (torch's zip format, central directory present)."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        with zipfile.ZipFile(path) as archive:
            return len(archive.namelist()) > 0
    except (OSError, zipfile.BadZipFile):
        return False


def resolve_resume(resume: str | Path | None, output_dir: Path) -> str | None:
    """The checkpoint ``--resume`` names, checked to be whole before training starts.

    ``auto`` takes ``checkpoints/last.ckpt`` of ``output_dir`` when whole; when it is not
    (a kill during a copy), the newest whole checkpoint of the folder, with a warning; else
    a fresh start.

    Raises
    ------
    ValueError
        A named checkpoint (``last`` or a path) that is missing, empty or not a checkpoint.
    """
    if resume is None:
        return None
    folder = output_dir / "checkpoints"
    last = folder / "last.ckpt"
    if str(resume) == "auto":  # a requeued job: continue if there is something to continue
        if _complete_checkpoint(last):
            return str(last)
        others = sorted(
            (p for p in folder.glob("*.ckpt") if p != last and _complete_checkpoint(p)),
            key=lambda p: p.stat().st_mtime,
        )
        if last.exists():
            log.warning(
                "--resume auto: %s is incomplete; %s", last,
                f"resuming from {others[-1].name}" if others else "starting afresh",
            )  # fmt: skip
        return str(others[-1]) if others else None
    path = last if str(resume) == "last" else Path(resume)
    if not path.is_file():
        raise ValueError(f"--resume: checkpoint {path} not found")
    if not _complete_checkpoint(path):
        raise ValueError(f"--resume: {path} is empty, truncated or not a Lightning checkpoint")
    return str(path)


#: Seconds to wait for an MLflow server before refusing the run (and for each MLflow request).
MLFLOW_TIMEOUT_S = 5.0


def check_mlflow_reachable(uri: str, timeout_s: float = MLFLOW_TIMEOUT_S) -> None:
    """Refuse an ``http(s)`` MLflow URI whose server does not answer within ``timeout_s``.

    Without this an unreachable server blocks training for minutes (MLflow retries each
    request with back-off). Local stores (``sqlite:``, ``file:``, paths) are not checked.

    Raises
    ------
    ValueError
        Naming the URI and why it cannot be reached.
    """
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ValueError(
            f"execution.mlflow_tracking_uri = {uri!r} (--mlflow-tracking-uri): cannot reach "
            f"{parsed.hostname}:{port} within {timeout_s:.0f} s ({exc.strerror or exc}); "
            "use --logger csv or a reachable server"
        ) from None


def check_execution_fits_machine(execution: ExecutionConfig) -> None:
    """Refuse an accelerator this machine lacks, or more devices than it has, before any work.

    Raises
    ------
    ValueError
        Naming the field, the flag and what the machine has.
    """
    accelerator, devices = execution.accelerator, execution.devices
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise ValueError(
            f"execution.accelerator = {accelerator!r} (--accelerator): this machine has no CUDA GPU; "
            "use --accelerator cpu or auto"
        )
    if accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("execution.accelerator = 'mps' (--accelerator): MPS is not available here")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    available = gpus if on_gpu else (os.cpu_count() or 1)
    what = "GPU(s)" if on_gpu else "CPU core(s)"
    wanted = len(devices) if isinstance(devices, tuple) else devices
    if isinstance(wanted, int) and wanted > available:
        raise ValueError(
            f"execution.devices = {wanted} (--devices): this machine has {available} {what}; "
            f"ask for at most {available}"
        )
    if execution.logger == "mlflow" and execution.mlflow_tracking_uri is not None:
        check_mlflow_reachable(execution.mlflow_tracking_uri)
    if on_gpu and isinstance(devices, tuple) and devices and max(devices) >= gpus:
        raise ValueError(f"execution.devices = {list(devices)} (--devices): GPU indices run 0 .. {gpus - 1}")
