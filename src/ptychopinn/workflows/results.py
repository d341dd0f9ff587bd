"""What the jobs return: one module for every result type of :mod:`ptychopinn.workflows`.

Each job (``train``, ``infer``, ``reconstruct``, ``evaluate``, ``example``) returns one of these;
the objects stitched from patches are a :class:`Reconstruction`. Results hold arrays and the
paths of the files written; nothing here computes or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only: this module imports nothing heavy
    import lightning as L
    from torch.utils.data import DataLoader

    from ..config import RunConfig
    from ..evaluation import ObjectComparison
    from ..io import FileReport
    from ..models import PINNModule
    from ..refine import RefinementResult


@dataclass
class Reconstruction:
    """A full-field object with where it is valid, in object pixels.

    Attributes
    ----------
    object : numpy.ndarray
        complex64 ``(H, W)``, zero where not covered.
    coverage : numpy.ndarray
        bool ``(H, W)``.
    weight_sum : numpy.ndarray
        float32 ``(H, W)`` stitching denominator.
    positions : numpy.ndarray
        ``(n, 2)`` ``(y, x)`` scan positions used.
    pixel_size_m : float or None
        Object pixel size.
    """

    object: np.ndarray
    coverage: np.ndarray
    weight_sum: np.ndarray
    positions: np.ndarray
    pixel_size_m: float | None


@dataclass
class InferenceResult:
    """What ``infer`` produced: the stitched object, its score against a truth, the files."""

    reconstruction: Reconstruction
    comparison: ObjectComparison | None
    files: dict[str, Path]
    patterns_per_second: float


@dataclass
class ReconstructResult:
    """What ``reconstruct`` produced."""

    reconstruction: Reconstruction
    refinement: RefinementResult
    comparison: ObjectComparison | None
    start: str  # "model", "trained" or "constant"
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    initial_comparison: ObjectComparison | None = None
    model: str | None = None  # the bundle that gave the starting object
    #: the forward model refined through: its name, options and what follows from them
    #: (a near field's magnification and effective distance)
    forward_model: dict | None = None
    device: str | None = None  # where it ran


@dataclass
class EvaluationResult:
    """What ``evaluate`` produced: its metrics, the comparison with a truth, the files."""

    metrics: dict[str, object]
    comparison: ObjectComparison | None
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a training run produced (objects are kept for inspection and tests)."""

    output_dir: Path
    config: RunConfig
    trainer: L.Trainer
    module: PINNModule
    train_loader: DataLoader
    val_loader: DataLoader | None
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    summary: dict[str, Any]
    bundle: Path | None = None
    best_bundle: Path | None = None


@dataclass
class ExampleResult:
    """What ``example`` produced: its folder, files, the check of each file and both results."""

    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    reports: list[FileReport] = field(default_factory=list)
    reconstruction: ReconstructResult | None = None
    single_pass: InferenceResult | None = None

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports)


@dataclass
class WatchResult:
    """What ``watch`` produced: its folder, the last status, the files, the final reconstruction."""

    output_dir: Path
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    final: ReconstructResult | None = None
