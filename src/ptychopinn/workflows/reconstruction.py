"""Workflow: the one command a beamline user runs on a scan (``ptychopinn reconstruct``).

1. A starting object: the network's stitched prediction when a model bundle is given (or
   trained on the scan first with ``train_first``), else a flat object.
2. Physics refinement (:mod:`ptychopinn.refine`) of that object (and optionally the probe and
   the positions) through the same forward model and Poisson likelihood.
3. The outputs of ``infer``, plus the refined probe and positions and the loss curve.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..common import DeviceOptions, output_dir_option, photons_option, progress_option
from ..config import load_run_config
from ..io import Scan, read_scan, write_scan
from ..options import Options, option
from ..physics import canvas_shape
from ..refine import (
    RefinementConfig,
    RefinementProgress,
    constant_object,
    refine_object,
)
from .bundles import LoadedModel, load_model_bundle, resolve_device
from .evaluation import compare_to_truth
from .geometry import scan_forward_model, scan_geometry
from .inference import Reconstruction, predict_object
from .outputs import check_product_metadata
from .pretrained import matching_bundle
from .reconstruct_outputs import write_reconstruct_outputs
from .results import ReconstructResult
from .run_folder import claim_output_folder

#: Without a progress bar (not on a terminal), a refinement status line this often (s).
PROGRESS_LINE_S = 30.0


@dataclass(frozen=True)
class ReconstructOptions(Options):
    """Options of :func:`reconstruct`: where it starts, the refinement, and what it writes.

    Attributes
    ----------
    model : str or None
        A model bundle whose prediction starts the refinement.
    use_pretrained : bool
        Without ``model`` (and without ``train_first``): start from a pretrained bundle shipped
        with the package when one was made for this scan's probe (same N, probe overlap
        >= 0.99); else from a flat object.
    train_first : bool
        Without a model: first train a network on this scan for ``train_time_budget_s``
        (in ``output_dir/training``).
    train_config : str or None
        ``train``'s YAML/JSON configuration (model, training, execution sections) for that training.
    train_learning_rate : float or None
        That training's AdamW learning rate (default: train's).
    inference_batch_size : int
        Groups per network forward pass.
    photons_per_pattern : float or None
        For NPZ files holding normalised amplitudes.
    progress : bool or None
        Progress bars (default: on a terminal).
    ptychodus_product : bool
        Also write ``product.h5``, a ptychodus product (object, refined probe and positions,
        metadata, loss history) that ptychodus opens.
    half_scan_frc : bool
        Also reconstruct the even and the odd positions apart (flat start, the same options
        and as many epochs as the full refinement ran) and report their Fourier ring
        correlation: the resolution without a ground truth (``frc.png``, in
        ``reconstruct.json`` and the report; in metres when the pixel size is known).
    refinement : RefinementConfig
        The physics refinement.
    device : DeviceOptions
        Where the network and the refinement run.
    """

    section = "reconstruct"
    model: str | None = option(
        None, "model bundle whose prediction starts the refinement", flags=("--model", "--model_path"),
        path=True, default_text="a shipped pretrained model made for the probe, if any",
    )  # fmt: skip
    use_pretrained: bool = option(
        True, "without --model: start from a shipped pretrained model made for the probe, when one "
        "matches (--no-pretrained: a flat object)", flags=("--pretrained",),
    )  # fmt: skip
    train_first: bool = option(
        False, "without --model: train a network on the scan first (see --train-time-budget)",
        flags=("--train-first",),
    )  # fmt: skip
    train_time_budget_s: float = option(
        60.0, "training time for --train-first", flags=("--train-time-budget",), metavar="SECONDS",
        minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    train_config: str | None = option(
        None, "with --train-first: train's YAML/JSON configuration (model, training, execution "
        "sections) for that training", flags=("--train-config",), metavar="FILE", path=True,
    )  # fmt: skip
    train_learning_rate: float | None = option(
        None, "with --train-first: the training's AdamW learning rate", flags=("--train-learning-rate",),
        metavar="LR", minimum=0.0, exclusive_minimum=True, default_text="train's",
    )  # fmt: skip
    inference_batch_size: int = option(
        64, "groups per network forward pass", flags=("--inference-batch-size",), minimum=1
    )
    photons_per_pattern: float | None = photons_option()
    progress: bool | None = progress_option()
    ptychodus_product: bool = option(
        False, "also write OUTPUT_DIR/product.h5 (object, refined probe and positions, losses) "
        "that ptychodus opens", flags=("--ptychodus-product",),
    )  # fmt: skip
    half_scan_frc: bool = option(
        False, "also reconstruct the even and odd positions apart and report their Fourier ring "
        "correlation (resolution without a ground truth; frc.png)", flags=("--half-scan-frc",),
    )  # fmt: skip
    refinement: RefinementConfig = field(default_factory=RefinementConfig)
    device: DeviceOptions = field(default_factory=DeviceOptions)

    def check(self) -> None:
        if self.model is not None and self.train_first:
            self.fail("train_first", "--model and --train-first exclude each other: the model is trained")


def reconstruct_scan(
    scan: Scan,
    options: ReconstructOptions | None = None,
    *,
    training_dir: str | os.PathLike | None = None,
    network: LoadedModel | None = None,
    log: Callable[[str], None] = print,
    callback: Callable[[RefinementProgress], None] | None = None,
) -> ReconstructResult:
    """Reconstruct a scan in memory (nothing written unless ``train_first`` trains a network).

    Parameters are those of :func:`reconstruct`, with the scan itself instead of a file,
    ``training_dir``: where ``train_first`` trains (default: a temporary folder, removed after;
    the scan is written there as an NPZ file when it has no file of its own), and ``network``:
    ``options.model`` already loaded (:func:`load_network_for`), not read again.
    """
    options = options if options is not None else ReconstructOptions()
    model, train_first, progress = options.model, options.train_first, options.progress
    refinement = options.refinement
    # the shipped networks are far-field ones: a start for far-field refinements only
    far_field = refinement.forward_model == "far_field"
    if model is None and not train_first and options.use_pretrained and far_field:
        model = matching_bundle(scan.probe_modes)
        if model is not None:
            log(f"starting from the shipped pretrained model {model.name} (made for this probe)")
    started = time.perf_counter()
    scan = scan.load()
    device = resolve_device(options.device.accelerator, options.device.devices)
    size = scan.pattern_size
    shape = (
        scan.object.shape if scan.object is not None else canvas_shape(torch.from_numpy(scan.positions), size)
    )
    timings: dict[str, float] = {}

    start = "constant"
    bundle = Path(model) if model is not None else None
    with tempfile.TemporaryDirectory(prefix="ptychopinn-train-") as scratch:
        if train_first:
            bundle = _train_on(scan, Path(training_dir or scratch), options, log)
            timings["training_s"] = time.perf_counter() - started
            start = "trained"
        initial = None
        initial_comparison = None
        if bundle is not None:
            t0 = time.perf_counter()
            given = start == "constant" and options.model is not None
            if given:
                loaded = network if network is not None else load_network_for(options)
            else:
                loaded = load_model_bundle(bundle)
            if start == "constant":
                start = "model"
            predicted = predict_object(
                loaded.module, scan, gridsize=loaded.gridsize, batch_size=options.inference_batch_size,
                device=device, seed=refinement.seed, progress=progress,
            )  # fmt: skip
            flat = constant_object(
                shape, torch.from_numpy(scan.diffraction), torch.from_numpy(scan.probe_modes)
            )
            initial = np.where(predicted.coverage, predicted.object, flat.numpy())
            timings["network_s"] = time.perf_counter() - t0
            initial_comparison = compare_to_truth(
                predicted.object, scan.object, predicted.weight_sum, pixel_size_m=scan.pixel_size_m()
            )
            log(f"network prediction from {bundle.name} in {timings['network_s']:.2f} s")
    if initial is None and scan.object is not None:
        initial = constant_object(
            shape, torch.from_numpy(scan.diffraction), torch.from_numpy(scan.probe_modes)
        )

    t0 = time.perf_counter()
    refined = _refine_with_progress(scan, initial, refinement, device, progress, log, callback)
    timings["refinement_s"] = time.perf_counter() - t0
    if refinement.calibrate_probe:
        log(
            f"probe calibrated to the measured counts: amplitude x {refined.probe_scale:.4g} "
            f"(power x {refined.probe_scale**2:.4g})"
        )
    log(
        f"refined ({refinement.resolved().optimizer}) for {refined.epochs} epoch(s) in "
        f"{refined.elapsed_s:.1f} s (stopped: {refined.stop_reason})"
    )
    if refinement.correct_positions:
        shifts = np.linalg.norm(refined.positions - scan.positions, axis=1)
        log(f"position corrections: median {np.median(shifts):.3f} px, largest {shifts.max():.3f} px")
    coverage = refined.coverage
    obj = np.where(coverage, refined.object, 0).astype(np.complex64)
    result_object = Reconstruction(
        object=obj, coverage=coverage, weight_sum=refined.illumination, positions=refined.positions,
        pixel_size_m=scan.pixel_size_m(),
    )  # fmt: skip
    comparison = compare_to_truth(obj, scan.object, refined.illumination, pixel_size_m=scan.pixel_size_m())
    timings["total_s"] = time.perf_counter() - started
    forward = scan_forward_model(scan, refinement)
    return ReconstructResult(
        reconstruction=result_object, refinement=refined, comparison=comparison, start=start,
        timings=timings, initial_comparison=initial_comparison, model=os.fspath(bundle) if bundle else None,
        forward_model=forward.describe(), device=str(device),
    )  # fmt: skip


def load_network_for(options: ReconstructOptions) -> LoadedModel:
    """The bundle ``options.model``, loaded and checked against the refinement's forward model.

    Raises
    ------
    ValueError
        The network was made for another forward model (or the bundle is bad: BundleError).
    """
    loaded = load_model_bundle(options.model)
    made_for, uses = loaded.config.model.forward_model, options.refinement.forward_model
    if made_for != uses:
        raise ValueError(
            f"{options.model}: the network was made for the {made_for} forward model; the refinement "
            f"uses {uses} (--forward-model)"
        )
    return loaded


def _refine_with_progress(
    scan: Scan,
    initial: np.ndarray | None,
    refinement: RefinementConfig,
    device: torch.device,
    progress: bool | None,
    log: Callable[[str], None],
    callback: Callable[[RefinementProgress], None] | None,
):
    """:func:`~ptychopinn.refine.refine_object` of the scan with a progress bar (on a terminal)
    or, in a batch job's log, a status line every :data:`PROGRESS_LINE_S` seconds."""
    bar = tqdm(total=refinement.epochs, desc="refining", unit="epoch",
               disable=None if progress is None else not progress)  # fmt: skip
    last_line = [0.0]

    def report(step: RefinementProgress) -> None:
        if callback is not None:
            callback(step)
        bar.update(1)
        bar.set_postfix(loss=f"{step.loss:.5g}", seconds=f"{step.elapsed_s:.1f}")
        if bar.disable and progress is None and step.elapsed_s - last_line[0] >= PROGRESS_LINE_S:
            last_line[0] = step.elapsed_s
            log(f"refining: epoch {step.epoch + 1}, loss {step.loss:.5g}, {step.elapsed_s:.0f} s")

    try:
        return refine_object(
            scan.diffraction, scan.positions, scan.probe_modes, initial, mask=scan.mask,
            config=refinement, device=device, callback=report, geometry=scan_geometry(scan, refinement),
        )  # fmt: skip
    finally:
        bar.close()


def _train_on(scan: Scan, out: Path, options: ReconstructOptions, log: Callable[[str], None]) -> Path:
    """Train a network on ``scan`` for ``options.train_time_budget_s`` in ``out``; return its bundle.

    ``options.train_config`` (``train``'s YAML/JSON sections) and ``train_learning_rate`` set
    other training options; the scan, the budget, the device and the seed stay these.
    """
    from .training import train

    out.mkdir(parents=True, exist_ok=True)
    data = scan.source
    if data is None or not os.path.exists(data):  # a scan built in memory: give it a file
        data = os.fspath(out / "scan.npz")
        write_scan(scan, data)
    budget_s, progress = options.train_time_budget_s, options.progress
    log(f"training a network on the scan for {budget_s:.0f} s")
    given: dict[str, dict[str, Any]] = {}
    if options.train_learning_rate is not None:
        given["execution"] = {"learning_rate": options.train_learning_rate}
    fixed = {
        "data": {"train_data": os.fspath(data),
                 "photons_per_pattern": scan.metadata.photons_per_pattern},
        "training": {"time_budget_s": budget_s},
        # the network learns through the physics the refinement uses
        "model": {"forward_model": options.refinement.forward_model,
                  "forward_model_options": options.refinement.forward_model_options},
        "execution": {"accelerator": options.device.accelerator, "seed": options.refinement.seed,
                      "progress_bar": bool(progress) if progress is not None else False},
    }  # fmt: skip
    given.setdefault("training", {}).setdefault("epochs", 10_000)
    for section, values in fixed.items():
        given.setdefault(section, {}).update(values)
    run = load_run_config(options.train_config, given)
    return train(run, out).bundle


def reconstruct(
    data: str | os.PathLike,
    output_dir: str | os.PathLike,
    options: ReconstructOptions | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    callback: Callable[[RefinementProgress], None] | None = None,
) -> ReconstructResult:
    """Reconstruct a scan: network prediction (optional), then physics refinement.

    Parameters
    ----------
    data : path
        Scan file (NPZ or CXI) or ptychodus' layout; loaded into memory (refinement revisits
        every pattern).
    output_dir : path
        Where the outputs go (see :func:`~ptychopinn.workflows.outputs.write_reconstruction`;
        plus ``probe`` / ``positions_refined`` / ``loss`` in ``reconstruction.npz``,
        ``loss.json``, ``loss.png``, ``reconstruct.json``).
    options : ReconstructOptions, optional
        Where it starts, the refinement, the device and the optional outputs (default: all
        defaults).
    overwrite : bool
        Replace the outputs of an earlier run in ``output_dir`` (refused otherwise; inputs are
        never written: :func:`~.run_folder.claim_output_folder`).
    log : callable
        Receives one-line status messages.
    callback : callable, optional
        Also called with every epoch's :class:`~ptychopinn.refine.RefinementProgress`.

    Examples
    --------
    >>> options = ReconstructOptions(refinement=RefinementConfig(time_budget_s=5.0, refine_probe=True))
    >>> options.refinement.solver_name()
    'preconditioned'
    """
    options = options if options is not None else ReconstructOptions()
    model = options.model
    scan = read_scan(data, photons_per_pattern=options.photons_per_pattern)  # bad input: nothing made yet
    if options.ptychodus_product:
        check_product_metadata(scan)  # before the work, not after it
    # a bad bundle, or one made for other physics, is refused before the folder is made
    network = load_network_for(options) if model is not None else None
    out = claim_output_folder(
        output_dir, command="reconstruct", inputs=[data, model, options.train_config], overwrite=overwrite
    )
    result = reconstruct_scan(
        scan, options, training_dir=out / "training", network=network, log=log, callback=callback
    )
    result.files = write_reconstruct_outputs(
        result, scan, out, options, data=data, device=result.device, log=log
    )  # fmt: skip
    return result


@dataclass(frozen=True)
class ReconstructInputs(Options):
    """The one command for a scan. With --model: the network's prediction, refined through
    the forward model. Without: the prediction of a shipped pretrained network made for the
    scan's probe, if there is one (--no-pretrained: never), else a flat object, optionally
    after a short training on the scan (--train-first). Writes the outputs of infer plus the
    refined probe and positions (in reconstruction.npz), the loss curve (loss.json, loss.png)
    and reconstruct.json."""

    section = "reconstruct"
    data: str = option(
        None, "scan file (NPZ or CXI) or a ptychodus directory (diffraction.h5 + product.h5)",
        positional=True, path=True, metavar="DATA",
    )  # fmt: skip
    output_dir: str = output_dir_option()
