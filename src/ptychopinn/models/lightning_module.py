"""Lightning module: self-supervised (Poisson) training of the physics-informed network.

Automatic optimisation throughout, so the Trainer's gradient clipping, gradient accumulation,
precision and learning-rate schedulers all apply.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import lightning as L
import torch

from ..config import ModelConfig, RunConfig, TrainingConfig
from ..physics import amplitude_mae, poisson_nll
from ..physics.forward_models import Geometry, build_forward_model
from .generators import build_generator
from .pinn import ForwardModel, PtychoPINN


def supervised_l1(patches: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Baseline loss: L1 on amplitude plus L1 on the wrapped phase difference."""
    amplitude = (patches.abs() - truth.abs()).abs().mean()
    phase = torch.angle(patches * truth.conj()).abs().mean()
    return amplitude + phase


class PINNModule(L.LightningModule):
    """Trains a :class:`~ptychopinn.models.pinn.PtychoPINN` through the forward model.

    Parameters
    ----------
    model : dict
        :class:`~ptychopinn.config.ModelConfig` fields.
    training : dict
        :class:`~ptychopinn.config.TrainingConfig` fields.
    channels : int
        C = g^2.
    size : int
        N.
    probe_modes : int
        M, number of probe modes.
    learning_rate : float
        Adam(W) learning rate of the network.
    scheduler : str
        ``none``, ``cosine``, ``step``, ``exponential`` or ``plateau``.
    monitor : str
        Metric a ``plateau`` scheduler watches.
    input_scale : float
        The frozen normalisation constant c (stored with the weights).
    input_normalisation : {"frozen", "per_scan"}
        ``frozen``: inputs are scaled by ``input_scale`` (a model trained on one set of
        scans); ``per_scan``: by each scan's own c (a pretrained model that meets any photon
        count).
    probe : torch.Tensor, optional
        Initial complex probe ``(M, N, N)``; None when loading from a checkpoint.
    mask : torch.Tensor, optional
        Detector mask ``(N, N)``, True where valid.
    """

    def __init__(
        self,
        model: dict[str, Any],
        training: dict[str, Any],
        channels: int,
        size: int,
        probe_modes: int = 1,
        learning_rate: float = 1e-3,
        scheduler: str = "none",
        monitor: str = "train_loss",
        input_scale: float = 1.0,
        input_normalisation: str = "frozen",
        probe: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        has_mask: bool | None = None,
    ):
        super().__init__()
        if input_normalisation not in ("frozen", "per_scan"):
            raise ValueError(
                f"input_normalisation must be 'frozen' or 'per_scan', got {input_normalisation!r}"
            )
        has_mask = mask is not None if has_mask is None else has_mask
        self.save_hyperparameters(ignore=["probe", "mask"])
        self.hparams["has_mask"] = has_mask
        self.model_config = ModelConfig(**model)
        self.training_config = TrainingConfig(**training)
        if probe is None:
            probe = torch.zeros(probe_modes, size, size, dtype=torch.complex64)
        generator = build_generator(self.model_config, channels, size)
        config = self.model_config
        detector = build_forward_model(
            config.forward_model, config.plugin_options("forward_model_options", config.forward_model),
            Geometry(wavelength_m=config.wavelength_m, pixel_size_m=config.object_pixel_m),
        )  # fmt: skip
        forward_model = ForwardModel(probe, config.probe_trainable, config.overlap_window, detector)
        self.net = PtychoPINN(generator, forward_model)
        self.register_buffer("input_scale", torch.tensor(float(input_scale), dtype=torch.float64))
        if has_mask and mask is None:  # rebuilt from a checkpoint: the state dict fills it
            mask = torch.ones(size, size, dtype=torch.bool)
        self.register_buffer("mask", mask.to(torch.bool) if has_mask else None)

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x, offsets)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        patches, expected = self(batch["x"], batch["offsets"])
        if "intensity_scale" in batch:  # corpus items: each at its own photon count
            expected = expected * batch["intensity_scale"].to(expected.dtype).view(-1, 1, 1, 1)
        counts = batch["counts"].float()
        kind = self.training_config.loss
        parts: dict[str, torch.Tensor] = {}
        if kind == "supervised":
            return supervised_l1(patches, batch["truth"]), parts
        if kind in ("poisson", "poisson+mae"):
            parts["nll"] = poisson_nll(expected, counts, self.mask)
        if kind in ("amplitude_mae", "poisson+mae"):
            parts["mae"] = amplitude_mae(expected, counts, self.mask)
        if kind == "poisson+mae":
            return parts["nll"] + self.training_config.mae_weight * parts["mae"], parts
        return next(iter(parts.values())), parts

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        size = batch["x"].shape[0]
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        self.log(
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=False,
            batch_size=size,
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log(
            "val_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["x"].shape[0],
            sync_dist=True,
        )
        return loss

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        patches, _ = self(batch["x"], batch["offsets"])
        return patches

    def configure_optimizers(self) -> Any:
        lr = self.hparams.learning_rate
        groups = [
            {
                "params": list(self.net.generator.parameters()),
                "lr": lr,
                "weight_decay": self.training_config.weight_decay,
                "name": "generator",
            }
        ]
        probe = self.net.forward_model.probe_real
        if isinstance(probe, torch.nn.Parameter):
            groups.append(
                {
                    "params": [probe],
                    "lr": self.training_config.probe_learning_rate or lr,
                    "weight_decay": 0.0,
                    "name": "probe",
                }
            )
        optimizer = torch.optim.AdamW(groups)
        scheduler = self.hparams.scheduler
        if scheduler == "none":
            return optimizer
        epochs = (
            self.trainer.max_epochs
            if self.trainer and self.trainer.max_epochs
            else self.training_config.epochs
        )
        if scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
        elif scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=max(1, math.ceil(epochs / 3)), gamma=0.3
            )
        elif scheduler == "exponential":
            sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.95)
        elif scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {
                    "scheduler": sched,
                    "monitor": self.hparams.monitor,
                    "interval": "epoch",
                },
            }
        else:  # guarded by ExecutionConfig
            raise ValueError(f"unknown scheduler {scheduler!r}")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def build_module(
    config: RunConfig,
    *,
    size: int,
    probe_modes: int,
    channels: int | None = None,
    probe: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    has_mask: bool | None = None,
    input_scale: float = 1.0,
    input_normalisation: str = "frozen",
    monitor: str = "train_loss",
) -> PINNModule:
    """The one place a :class:`PINNModule` is built from a run's configuration.

    Parameters
    ----------
    config : RunConfig
        Its ``model`` and ``training`` sections define the network and loss; ``execution``
        gives the learning rate and schedule; ``data`` the channels C = g^2 (unless given).
    size, probe_modes : int
        N and M.
    channels : int, optional
        C when it differs from ``config.data.channels`` (a bundle's manifest).
    probe, mask, has_mask, input_scale, input_normalisation, monitor :
        As for :class:`PINNModule`.

    Examples
    --------
    >>> from ptychopinn.config import RunConfig
    >>> config = RunConfig().updated({"model": {"width": 4, "depth": 1, "modes": 4}})
    >>> module = build_module(config, size=32, probe_modes=1)
    >>> module.hparams.channels, type(module.net.generator).__name__
    (1, 'FNOGenerator')
    """
    return PINNModule(
        model=dataclasses.asdict(config.model),
        training=dataclasses.asdict(config.training),
        channels=config.data.channels if channels is None else channels,
        size=size,
        probe_modes=probe_modes,
        learning_rate=config.execution.learning_rate,
        scheduler=config.execution.scheduler,
        monitor=monitor,
        input_scale=input_scale,
        input_normalisation=input_normalisation,
        probe=probe,
        mask=mask,
        has_mask=has_mask,
    )
