"""Run configuration as frozen dataclasses: data, model, training and execution.

Every section is an :class:`~ptychopinn.options.Options`: each field is validated from its
declaration when the dataclass is built (a ``ValueError`` naming the section, the field and
the value); nothing global is ever mutated. Precedence when assembling a run: defaults < a
YAML/JSON file < command-line flags (:func:`load_run_config`).

The fields several options classes share (the device, the photon scale, progress, the output
folder) are declared once in :mod:`ptychopinn.common` and re-exported here. The holdout-region
syntax and the bounded reading of a configuration file are imported where they are used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .common import (
    accelerator_option,
    devices_option,
    parse_devices,
    photons_option,
)
from .options import Options, option
from .registry import FORWARD_MODELS, GENERATORS

PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
_PRECISION_ALIASES = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}
STRATEGIES = (
    "auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true",
    "fsdp", "deepspeed", "single_device", "dp",
)  # fmt: skip
SCHEDULERS = ("none", "cosine", "step", "exponential", "plateau")
LOGGERS = ("none", "csv", "tensorboard", "mlflow")
LOSSES = ("poisson", "amplitude_mae", "poisson+mae", "supervised")
PROBE_CALIBRATIONS = ("auto", "none", "mean_counts")
OVERLAP_WINDOWS = ("probe", "disk")


def __getattr__(name: str) -> Any:
    if name == "GENERATOR_NAMES":  # kept for callers of the former constant
        return GENERATORS.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class DataConfig(Options):
    """Which scans to use and how positions are grouped (docs/conventions.md, "Grouping").

    Attributes
    ----------
    train_data, test_data : str or None
        Scan files for training and for validation (test_data is optional).
    gridsize : int
        g; each training sample is a group of C = g^2 neighbouring positions.
    n_groups : int or None
        Groups drawn per scan; None: one per position.
    k_neighbors : int or None
        K nearest neighbours to draw each group's C - 1 partners from; None: 2C - 1.
    photons_per_pattern : float or None
        Photon scale for NPZ files holding normalised amplitudes.
    val_fraction : float
        Without ``test_data``: the fraction of positions held out (seeded) for validation.
    detector_bin : int
        F: gather F x F detector pixels into one (:mod:`ptychopinn.data.binning`): N/F pixels per pattern,
        F^2 fewer to compute, every pattern's counts kept; the object pixel stays, the field of
        view shrinks F times, so the probe must fit it (reported when it does not). ``infer``
        bins alike. Default 1 (no binning).
    probe : str or None
        A probe file replacing the scan's probe guess: a ``reconstruction.npz`` written by
        ``reconstruct --refine-probe`` (its refined modes), a scan file, or a ``.npy`` array
        ``(N, N)`` / ``(modes, N, N)``. Its power is calibrated to the counts like any probe.
    holdout_region : str or None
        ``SIDE:FRACTION`` (e.g. ``right:0.25``): a contiguous block of positions never used in
        training or validation, for testing the network on object regions it never saw
        (:mod:`ptychopinn.data.holdout`); ``infer --held-out`` reconstructs it.
    """

    section = "data"
    train_data: str | None = option(
        None, "training scan (NPZ, CXI, or a ptychodus directory)", metavar="FILE", scan_data=True,
        flags=("--train-data", "--train_data_file", "--train-data-file"), path=True,
    )  # fmt: skip
    test_data: str | None = option(
        None, "validation scan (optional)", metavar="FILE", scan_data=True,
        flags=("--test-data", "--test_data_file", "--test-data-file"), path=True,
    )  # fmt: skip
    gridsize: int = option(
        1, "g: groups of C = g^2 neighbouring positions", flags=("--gridsize",), minimum=1, maximum=8
    )
    n_groups: int | None = option(
        None, "groups per scan", flags=("--n-groups", "--n_groups", "--n-images", "--n_images"),
        minimum=1, default_text="one per position", scan_data=True,
    )  # fmt: skip
    k_neighbors: int | None = option(
        None, "neighbourhood size K for grouping", flags=("--k-neighbors",), minimum=1,
        default_text="2C - 1", scan_data=True,
    )  # fmt: skip
    photons_per_pattern: float | None = photons_option(scan_data=True)
    val_fraction: float = option(
        0.0, "without --test-data, fraction of positions held out for validation",
        flags=("--val-fraction",), minimum=0.0, maximum=1.0, exclusive_maximum=True, scan_data=True,
    )  # fmt: skip
    detector_bin: int = option(
        1, "bin F x F detector pixels: N/F per pattern, counts kept, object pixel unchanged, field "
        "of view / F (the probe must fit it); infer bins alike", flags=("--bin", "--detector-bin"),
        metavar="F", minimum=1, maximum=16, scan_data=True,
    )  # fmt: skip
    probe: str | None = option(
        None, "probe replacing the scan's guess: reconstruct's reconstruction.npz (refined modes), "
        "a scan file or a .npy array", flags=("--probe",), metavar="FILE", scan_data=True, path=True,
    )  # fmt: skip
    holdout_region: str | None = option(
        None, "hold out a contiguous block of positions (e.g. right:0.25) from training and "
        "validation; infer --held-out reconstructs it", flags=("--holdout-region",),
        metavar="SIDE:FRACTION", scan_data=True,
    )  # fmt: skip

    def check(self) -> None:
        if self.k_neighbors is not None and self.k_neighbors < self.gridsize**2 - 1:
            needed = self.gridsize**2 - 1
            self.fail("k_neighbors", f"must be >= C - 1 = {needed} for gridsize {self.gridsize}")
        if self.holdout_region is not None:
            from .data.holdout import parse_holdout_region

            try:
                parse_holdout_region(self.holdout_region)
            except ValueError as exc:
                self.fail("holdout_region", str(exc).split(": ", 1)[-1])

    @property
    def channels(self) -> int:
        """C = g^2, the number of patterns per group."""
        return self.gridsize**2


@dataclass(frozen=True)
class ModelConfig(Options):
    """The generator network and the physics layer around it.

    Attributes
    ----------
    generator : str
        ``cnn``, ``fno``, ``hybrid``, ``region`` or ``unrolled`` (see
        :mod:`ptychopinn.models.generators`).
    width : int
        Channels of the first stage (the CNN's filter scale; the FNO's width).
    depth : int
        Stages (CNN and hybrid) or spectral blocks (FNO; region: encoder + decoder).
    modes : int
        Fourier modes kept per axis by spectral layers (at most N/2 at their resolution).
    amplitude_max : float
        Object amplitude lies in (0, amplitude_max) (a sigmoid); phase in (-pi, pi) (pi tanh).
    unroll_steps : int
        ``unrolled`` generator: K, data-consistency steps through the probe after the
        per-pattern guess (ignored by the others).
    unroll_corrections : bool
        ``unrolled`` generator: a learned correction after each step (off: plain projection
        steps, only their step sizes learned).
    probe_trainable : bool
        Refine the probe as a parameter during training.
    probe_calibration : str
        ``auto``: rescale the probe so ``sum |P|^2`` equals the mean counts per pattern when
        the two differ by more than 2x; ``mean_counts``: always; ``none``: never.
    overlap_window : str
        Merge window of the overlap constraint: ``probe`` (|P|^2 / max) or ``disk``.
    generator_options : dict
        The chosen generator's own options, by name (the fields of its ``options`` class).
    forward_model : str
        How the exit wave reaches the detector in the physics layer
        (:mod:`ptychopinn.physics.forward_models`), with its ``forward_model_options``.
    wavelength_m, object_pixel_m : float or None
        The geometry a forward model other than the far field needs; ``train`` fills them
        from the training scan, so the bundle carries them.
    """

    section = "model"
    generator: str = option(
        "fno", "generator network", flags=("--generator",), choices=GENERATORS,
        default_text="fno, the best measured",
    )  # fmt: skip  (best measured: docs/benchmarks.md)
    width: int = option(16, "network width / filter scale", flags=("--width",), minimum=1)
    depth: int = option(3, "stages or spectral blocks", flags=("--depth",), minimum=1, maximum=6)
    modes: int = option(12, "Fourier modes of spectral layers", flags=("--modes",), minimum=1)
    amplitude_max: float = option(
        2.0, "object amplitudes lie in (0, this)", minimum=0.0, exclusive_minimum=True
    )
    unroll_steps: int = option(
        4, "unrolled generator: data-consistency steps", flags=("--unroll-steps",), minimum=0, maximum=64
    )
    unroll_corrections: bool = option(
        True, "unrolled generator: a learned correction after each step", flags=("--unroll-corrections",)
    )
    probe_trainable: bool = option(False, "refine the probe during training", flags=("--probe-trainable",))
    probe_calibration: str = option(
        "auto", "rescale the probe to the mean counts: auto, mean_counts, none",
        flags=("--probe-calibration",), choices=PROBE_CALIBRATIONS,
    )  # fmt: skip
    overlap_window: str = option("probe", "merge window of the overlap constraint", choices=OVERLAP_WINDOWS)
    generator_options: dict[str, Any] = option(
        help="the generator's own options (its Options class; none: its defaults)", flags=("--generator",),
        plugins=GENERATORS, group="generator options",
    )  # fmt: skip
    forward_model: str = option(
        "far_field", "how the exit wave reaches the detector in the network's physics layer",
        flags=("--forward-model",), choices=FORWARD_MODELS,
    )  # fmt: skip
    forward_model_options: dict[str, Any] = option(
        help="the forward model's own options", flags=("--forward-model",), plugins=FORWARD_MODELS,
        group="forward model",
    )  # fmt: skip
    wavelength_m: float | None = option(
        None, "wavelength for the forward model (m); train fills it from the scan", minimum=0.0,
        exclusive_minimum=True,
    )  # fmt: skip
    object_pixel_m: float | None = option(
        None, "object pixel for the forward model (m); train fills it from the scan", minimum=0.0,
        exclusive_minimum=True,
    )  # fmt: skip

    def check(self) -> None:
        self.plugin_options("generator_options", self.generator)  # the generator takes these
        self.plugin_options("forward_model_options", self.forward_model)  # and the forward model these
        if self.generator == "unrolled" and self.forward_model != "far_field":
            self.fail("generator", "the unrolled generator's steps are far-field projections")


@dataclass(frozen=True)
class TrainingConfig(Options):
    """What is optimised and for how long.

    Attributes
    ----------
    epochs : int
        Maximum epochs.
    time_budget_s : float or None
        Stop after this many seconds of training (Lightning's ``max_time``).
    loss : str
        ``poisson`` (NLL in counts), ``amplitude_mae``, ``poisson+mae``, or ``supervised``
        (L1 on amplitude and phase against ground-truth patches; a baseline).
    mae_weight : float
        Weight of the amplitude MAE in ``poisson+mae``.
    probe_learning_rate : float or None
        Learning rate of the probe when it is trainable; None: the network's.
    weight_decay : float
        Adam(W) weight decay of the network.
    max_steps : int or None
        Stop after this many optimiser steps (Lightning's ``max_steps``); None: no step limit.
    init_from : str or None
        A model bundle whose network weights start the training (fine-tuning a pretrained
        model); its architecture (``model`` section) replaces the configured one.
    """

    section = "training"
    epochs: int = option(
        50, "maximum epochs", flags=("--epochs", "--max_epochs", "--max-epochs", "--nepochs"), minimum=1
    )
    time_budget_s: float | None = option(
        None, "stop training after this many seconds", flags=("--time-budget",), metavar="SECONDS",
        minimum=0.0, exclusive_minimum=True, maximum=1e9, exclusive_maximum=True,  # < 32 years
    )  # fmt: skip
    max_steps: int | None = option(
        None, "stop after this many optimiser steps", flags=("--max-steps",), minimum=1
    )
    init_from: str | None = option(
        None, "start from a (pretrained) model bundle's network weights; its architecture is used",
        flags=("--init-from",), metavar="BUNDLE", path=True,
    )  # fmt: skip
    loss: str = option("poisson", "loss", flags=("--loss",), choices=LOSSES)
    mae_weight: float = option(
        1.0, "weight of the amplitude MAE in poisson+mae", flags=("--mae-weight",), minimum=0.0
    )
    probe_learning_rate: float | None = option(
        None, "learning rate of a trainable probe (None: the network's)", minimum=0.0, exclusive_minimum=True
    )
    weight_decay: float = option(0.0, "AdamW weight decay of the network", minimum=0.0)

    def check(self) -> None:
        if self.init_from == "":
            self.fail("init_from", "must be the path of a model bundle")


@dataclass(frozen=True)
class ExecutionConfig(Options):
    """How training runs: every field reaches the Trainer, the DataLoader or the optimiser.

    See ``docs/configuration.md`` for each field and the object it reaches.
    """

    section = "execution"
    accelerator: str = accelerator_option()
    devices: int | str | tuple[int, ...] = devices_option()
    num_nodes: int = option(
        1, "machines for multi-node training", flags=("--num-nodes", "--num_nodes"), minimum=1
    )
    strategy: str = option("auto", "Lightning strategy", flags=("--strategy",), choices=STRATEGIES)
    precision: str = option(
        "32-true", "Lightning precision: 32-true, 16-mixed, bf16-mixed, 64-true, ...", flags=("--precision",),
        choices=PRECISIONS + tuple(_PRECISION_ALIASES), metavar="PRECISION",
    )
    deterministic: bool = option(
        False, "deterministic algorithms: bit-identical CPU runs for a seed", flags=("--deterministic",)
    )
    seed: int = option(0, "fixes splits, grouping, initialisation", flags=("--seed",), minimum=0)
    gradient_clip_val: float | None = option(
        None, "clip gradients at this value", flags=("--gradient-clip-val",), minimum=0.0, default_text="off"
    )
    gradient_clip_algorithm: str = option(
        "norm", "gradient clipping by norm or value", flags=("--gradient-clip-algorithm",),
        choices=("norm", "value"),
    )  # fmt: skip
    accumulate_grad_batches: int = option(
        1, "accumulate gradients over this many batches", flags=("--accumulate-grad-batches",), minimum=1
    )
    num_workers: int = option(
        0, "DataLoader worker processes", flags=("--num-workers", "--num_workers"), minimum=0
    )
    pin_memory: bool = option(False, "pin DataLoader memory (for GPU training)", flags=("--pin-memory",))
    learning_rate: float = option(
        1e-3, "AdamW learning rate", flags=("--learning-rate", "--learning_rate", "--lr"),
        minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    scheduler: str = option("none", "learning-rate schedule", flags=("--scheduler",), choices=SCHEDULERS)
    batch_size: int = option(16, "groups per batch", flags=("--batch-size", "--batch_size"), minimum=1)
    inference_batch_size: int = option(
        256, "groups per batch at inference", flags=("--inference-batch-size",), minimum=1
    )
    logger: str = option(
        "csv", "experiment logger: csv, tensorboard, mlflow, none", flags=("--logger",), choices=LOGGERS,
        shortcuts=(
            (("--disable-mlflow", "--disable_mlflow"), "none", "upstream's flag: the same as --logger none"),
        ),
    )  # fmt: skip
    mlflow_tracking_uri: str | None = option(
        None, "MLflow server or store", flags=("--mlflow-tracking-uri",), metavar="URI",
        default_text="a local store, OUTPUT_DIR/mlflow.db; never the network",
    )  # fmt: skip
    progress_bar: bool = option(
        True, "show the progress bar", flags=("--progress-bar",),
        shortcuts=((("--no-progress", "--quiet"), False, "the same as --no-progress-bar"),),
    )  # fmt: skip
    checkpoint_every_n_epochs: int = option(
        1, "checkpoint every n epochs", flags=("--checkpoint-every",), metavar="EPOCHS", minimum=1
    )
    save_top_k: int = option(1, "best checkpoints to keep (-1: all)", flags=("--save-top-k",), minimum=-1)
    monitor: str = option(
        "auto", "metric for best checkpoints", flags=("--monitor",),
        default_text="auto: val_loss, else train_loss",
    )  # fmt: skip
    early_stopping_patience: int | None = option(
        None, "stop when the monitored metric stalls", flags=("--early-stopping-patience",),
        metavar="EPOCHS", minimum=1,
    )  # fmt: skip
    log_every_n_steps: int = option(
        10, "logging interval in steps", flags=("--log-every-n-steps",), minimum=1
    )

    def normalise(self) -> None:
        if isinstance(self.accelerator, str):
            self._set("accelerator", self.accelerator.lower())
        if isinstance(self.precision, (str, int)) and not isinstance(self.precision, bool):
            precision = str(self.precision)
            self._set("precision", _PRECISION_ALIASES.get(precision, precision))

    def check(self) -> None:
        try:
            self._set("devices", parse_devices(self.devices))
        except ValueError as exc:
            self.fail("devices", str(exc))
        if self.mlflow_tracking_uri is not None and not self.mlflow_tracking_uri.strip():
            self.fail("mlflow_tracking_uri", "must be a URI such as http://host:5000 or sqlite:///runs.db")
        if not self.monitor:
            self.fail("monitor", "must be a metric name such as val_loss, or auto")

    def resolved_monitor(self, has_validation: bool) -> str:
        """The metric checkpoints and early stopping watch (``auto``: val_loss or train_loss)."""
        if self.monitor != "auto":
            return self.monitor
        return "val_loss" if has_validation else "train_loss"


@dataclass(frozen=True)
class RunConfig(Options):
    """A whole run: one options section per concern."""

    section = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "configuration") -> RunConfig:
        return cls().updated(values, source=source)

    def updated(self, values: dict[str, Any], *, source: str = "configuration") -> RunConfig:
        """A copy with the given ``{section: {field: value}}`` applied (unknown keys refused).

        A section given as None (an empty heading in a YAML file) changes nothing.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of sections, got {type(values).__name__}")
        for name, section_values in values.items():
            if section_values is not None and not isinstance(section_values, dict):
                raise ValueError(f"{source}: section '{name}' must be a mapping")
        return super().updated({k: v for k, v in values.items() if v is not None}, source=source)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) configuration file.

    Bounded: at most 1 MiB, 32 levels deep, no YAML aliases (:func:`ptychopinn.io.safety.load_document`).
    """
    from .io.safety import load_document

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: configuration file not found")
    values = load_document(path, what="configuration file")
    if values is not None and not isinstance(values, dict):
        raise ValueError(
            f"{path}: a configuration file is a mapping of sections, not {type(values).__name__}"
        )
    return values or {}


def load_run_config(
    config_file: str | os.PathLike | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> RunConfig:
    """Defaults, then the file's values, then ``overrides`` (e.g. command-line flags)."""
    config = RunConfig()
    if config_file is not None:
        config = config.updated(read_config_file(config_file), source=os.fspath(config_file))
    if overrides:
        config = config.updated(
            {name: {k: v for k, v in values.items()} for name, values in overrides.items() if values},
            source="command line",
        )
    return config
