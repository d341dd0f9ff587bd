"""ptychopinn as a ptychodus reconstructor (ptychodus 1.7's ``ptychodus.api.reconstruct``).

Register it in ptychodus with one line: in ``ptychodus/model/core.py``, add the library to the
list of reconstructor libraries handed to ``ProcessingCore``::

    __import__("ptychopinn.integrations.ptychodus").integrations.ptychodus.PtychoPINNLibrary(),

Or use the reconstructor directly::

    from ptychopinn.integrations.ptychodus import PtychoPINNReconstructor
    for output in PtychoPINNReconstructor().reconstruct(reconstruct_input):
        product = output.product

Needs ``pip install 'ptychopinn[ptychodus]'``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
    from ptychodus.api.product import LossValue, Product
    from ptychodus.api.reconstruct import (
        ReconstructInput,
        Reconstructor,
        ReconstructorLibrary,
        ReconstructOutput,
        TrainableReconstructor,
        TrainOutput,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    raise ModuleNotFoundError(
        f"ptychopinn.integrations.ptychodus needs ptychodus ({exc}); pip install 'ptychopinn[ptychodus]'"
    ) from exc

from ..io import atomic_path, read_scan, write_scan
from ..workflows import (
    DeviceOptions,
    ReconstructOptions,
    RefinementConfig,
    load_model_bundle,
    load_run_config,
    train,
)
from ..workflows.embedded import ArrayReconstruction, reconstruct_arrays, scan_from_arrays

__all__ = ["PtychoPINNLibrary", "PtychoPINNReconstructor", "arrays_from_input", "product_from_result"]


def arrays_from_input(parameters: ReconstructInput) -> dict[str, Any]:
    """The keyword arguments of :func:`~ptychopinn.workflows.embedded.reconstruct_arrays`
    (and ``scan_from_arrays``) taken from a ptychodus ``ReconstructInput``."""
    product = parameters.product
    pixel = product.object_.get_pixel_geometry()
    if not np.isclose(pixel.width_m, pixel.height_m, rtol=1e-6):
        raise ValueError(f"non-square object pixels ({pixel.width_m} x {pixel.height_m} m) are not supported")
    positions = product.probe_positions
    return dict(
        patterns=np.asarray(parameters.diffraction_patterns),
        x_m=np.asarray(positions.get_coordinates_x_m(), dtype=np.float64),
        y_m=np.asarray(positions.get_coordinates_y_m(), dtype=np.float64),
        probe=product.probes.get_probe_no_opr().get_array(),
        pixel_size_m=float(pixel.width_m),
        bad_pixels=None if parameters.bad_pixels is None else np.asarray(parameters.bad_pixels, dtype=bool),
    )


def product_from_result(result: ArrayReconstruction, parameters: ReconstructInput) -> Product:
    """A ptychodus ``Product`` holding our result, with the input's metadata and scan indexes."""
    product = parameters.product
    pixel = PixelGeometry(width_m=result.pixel_size_m, height_m=result.pixel_size_m)
    indexes = product.probe_positions.get_indexes()
    positions = ProbePositionSequence(
        [
            ProbePosition(int(i), float(x), float(y))
            for i, x, y in zip(indexes, result.x_m, result.y_m, strict=True)
        ]
    )
    return Product(
        metadata=product.metadata,
        probe_positions=positions,
        probes=ProbeSequence(array=result.probe[None], opr_weights=None, pixel_geometry=pixel),
        object_=Object(
            array=result.object[None],
            pixel_geometry=pixel,
            center=ObjectCenter(x_m=result.center_m[0], y_m=result.center_m[1]),
            layer_spacing_m=[],
        ),
        losses=[LossValue(epoch, float(value)) for epoch, value in enumerate(result.losses)],
    )


class PtychoPINNReconstructor(TrainableReconstructor):
    """ptychopinn's reconstruction (network start when a model is loaded, then physics refinement).

    Parameters
    ----------
    refinement : RefinementConfig, optional
        Refinement options; ``epochs`` is the progress goal ptychodus shows.
    accelerator : str
        ``auto`` (a GPU when present), ``cpu``, ``gpu``...
    model : path, optional
        A model bundle to start from (also set with ``load_model_from_file``).
    train_epochs : int
        Epochs of :meth:`train`.
    name : str
    """

    def __init__(
        self,
        *,
        refinement: RefinementConfig | None = None,
        accelerator: str = "auto",
        model: str | os.PathLike | None = None,
        train_epochs: int = 50,
        name: str = "PtychoPINN (ptychopinn)",
    ) -> None:
        self.refinement = refinement if refinement is not None else RefinementConfig()
        self.accelerator = accelerator
        self.train_epochs = train_epochs
        self._name = name
        self._model: Path | None = None
        if model is not None:
            self.load_model_from_file(Path(model))

    @property
    def name(self) -> str:
        return self._name

    def get_progress_goal(self) -> int:
        return self.refinement.epochs

    def reconstruct(self, parameters: ReconstructInput) -> Iterator[ReconstructOutput]:
        """Reconstruct, then yield one output holding the finished product."""
        options = ReconstructOptions(
            model=None if self._model is None else str(self._model), refinement=self.refinement,
            device=DeviceOptions(accelerator=self.accelerator), progress=False,
        )  # fmt: skip
        result = reconstruct_arrays(**arrays_from_input(parameters), options=options)
        yield ReconstructOutput(product=product_from_result(result, parameters), progress=len(result.losses))

    # -- TrainableReconstructor --------------------------------------------------------------
    def is_model_loaded(self) -> bool:
        return self._model is not None

    def get_model_file_filter(self) -> str:
        return "PtychoPINN model bundles (*.zip)"

    def load_model_from_file(self, file_path: Path) -> None:
        load_model_bundle(file_path)  # verifies the bundle (hashes, format) before it is used
        self._model = Path(file_path)

    def get_model_file_extension(self) -> str:
        return ".zip"

    def save_model(self, file_path: Path) -> None:
        if self._model is None:
            raise ValueError("no model is loaded or trained yet")
        with atomic_path(file_path) as tmp:
            shutil.copyfile(self._model, tmp)

    def get_training_data_file_filter(self) -> str:
        return "PtychoPINN scans (*.npz)"

    def export_training_data(self, file_path: Path, parameters: ReconstructInput) -> None:
        arguments = arrays_from_input(parameters)
        metadata = parameters.product.metadata
        scan = scan_from_arrays(
            **arguments,
            energy_ev=metadata.photon_energy_eV or None,
            detector_distance_m=metadata.detector_distance_m or None,
            indexes=parameters.product.probe_positions.get_indexes(),
        )
        write_scan(scan, Path(file_path).with_suffix(".npz"))

    def train(self, input_path: Path, output_path: Path) -> Iterator[TrainOutput]:
        """Train on the scan at ``input_path`` (a file, or a folder holding one); the bundle
        goes to ``output_path/model.zip`` and becomes the loaded model."""
        data = _training_file(Path(input_path))
        read_scan(data)  # a clear error now rather than inside the trainer
        run = load_run_config(overrides={
            "data": {"train_data": os.fspath(data)},
            "training": {"epochs": self.train_epochs},
            "execution": {"accelerator": self.accelerator, "progress_bar": False, "logger": "csv"},
        })  # fmt: skip
        result = train(run, output_path)
        self._model = Path(result.bundle)
        losses = _epoch_losses(Path(output_path))
        yield TrainOutput(
            training_loss=[LossValue(epoch, value) for epoch, value in losses],
            progress=int(result.summary["epochs_completed"]),
        )


def _training_file(path: Path) -> Path:
    if path.is_file():
        return path
    candidates = sorted(p for p in path.glob("*.npz")) if path.is_dir() else []
    if len(candidates) != 1:
        raise ValueError(f"{path}: expected one training scan (*.npz), found {len(candidates)}")
    return candidates[0]


def _epoch_losses(output_dir: Path) -> list[tuple[int, float]]:
    import csv

    losses = []
    for table in sorted(output_dir.glob("logs/version_*/metrics.csv"))[-1:]:
        with open(table) as handle:
            for row in csv.DictReader(handle):
                if row.get("train_loss"):
                    losses.append((int(row["epoch"]), float(row["train_loss"])))
    return losses


class PtychoPINNLibrary(ReconstructorLibrary):
    """The reconstructor library ptychodus lists (its constructor takes ptychodus' arguments)."""

    def __init__(self, settings_registry: Any = None, is_developer_mode_enabled: bool = False) -> None:
        super().__init__("ptychopinn")
        self._reconstructors: list[Reconstructor] = [PtychoPINNReconstructor()]

    @property
    def name(self) -> str:
        return "ptychopinn"

    def __iter__(self) -> Iterator[Reconstructor]:
        return iter(self._reconstructors)
