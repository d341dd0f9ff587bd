"""The Lightning plumbing that training and pretraining share.

The Trainer built from the execution and training options (every field reaches it: devices,
precision, clipping, budgets, checkpoints, early stopping, the logger), the checks that a run
fits the machine and can reach its MLflow server before anything starts, resuming from a
checkpoint of the same folder's run, and what a finished Trainer says (metrics, checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from ..config import ExecutionConfig, TrainingConfig
from ..models import PINNModule
from .run_folder import AtomicCheckpointIO
from .signals import GracefulStop

log = logging.getLogger("ptychopinn")

#: Lightning warnings that say nothing about the user's run (regular expressions).
LIGHTNING_NOISE = (
    r".*smaller than the logging interval.*",
    r".*does not have many workers.*",
    r".*LeafSpec.*is deprecated.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within: Lightning's per-run banners (accelerator lines, adverts) and the warnings of
    :data:`LIGHTNING_NOISE` are not shown; they say nothing about the user's run."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for noise in LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=noise)
        yield


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
