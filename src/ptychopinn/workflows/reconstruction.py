"""Workflow: the one command a beamline user runs on a scan (``ptychopinn reconstruct``).

1. A starting object: the network's stitched prediction when a model bundle is given (or
   trained on the scan first with ``train_first``), else a flat object.
2. Physics refinement (:mod:`ptychopinn.refine`) of that object (and optionally the probe and
   the positions) through the same forward model and Poisson likelihood.
3. The outputs of ``infer``, plus the refined probe and positions and the loss curve.
"""

from __future__ import annotations

import dataclasses
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

from ..config import DeviceOptions, load_run_config, photons_option, progress_option
from ..io import Scan, read_scan, write_json, write_scan
from ..options import Options, option
from ..physics import canvas_shape
from ..refine import (
    RefinementConfig,
    RefinementProgress,
    constant_object,
    refine_object,
)
from .bundles import load_model_bundle, resolve_device
from .evaluation import compare_to_truth
from .evaluation import half_scan_frc as half_scan_frc_of
from .figures import plot_frc
from .inference import Reconstruction, predict_object
from .outputs import check_product_metadata, write_loss_curve, write_product, write_reconstruction
from .pretrained import matching_bundle
from .report import write_report
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
    log: Callable[[str], None] = print,
    callback: Callable[[RefinementProgress], None] | None = None,
) -> ReconstructResult:
    """Reconstruct a scan in memory (nothing written unless ``train_first`` trains a network).

    Parameters are those of :func:`reconstruct`, with the scan itself instead of a file and
    ``training_dir``: where ``train_first`` trains (default: a temporary folder, removed after).
    The scan is written there as an NPZ file for training when it has no file of its own.
    """
    options = options if options is not None else ReconstructOptions()
    model, train_first, progress = options.model, options.train_first, options.progress
    if model is None and not train_first and options.use_pretrained:
        model = matching_bundle(scan.probe_modes)
        if model is not None:
            log(f"starting from the shipped pretrained model {model.name} (made for this probe)")
    refinement = options.refinement
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
    bar = tqdm(
        total=refinement.epochs,
        desc="refining",
        unit="epoch",
        disable=None if progress is None else not progress,
    )

    last_line = [0.0]

    def report(step: RefinementProgress) -> None:
        if callback is not None:
            callback(step)
        bar.update(1)
        bar.set_postfix(loss=f"{step.loss:.5g}", seconds=f"{step.elapsed_s:.1f}")
        if bar.disable and progress is None and step.elapsed_s - last_line[0] >= PROGRESS_LINE_S:
            # not on a terminal (a batch job's log): a line now and then instead of a bar
            last_line[0] = step.elapsed_s
            log(f"refining: epoch {step.epoch + 1}, loss {step.loss:.5g}, {step.elapsed_s:.0f} s")

    try:
        refined = refine_object(
            scan.diffraction, scan.positions, scan.probe_modes, initial, mask=scan.mask,
            config=refinement, device=device, callback=report,
        )  # fmt: skip
    finally:
        bar.close()
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
    return ReconstructResult(
        reconstruction=result_object, refinement=refined, comparison=comparison, start=start,
        timings=timings, initial_comparison=initial_comparison, model=os.fspath(bundle) if bundle else None,
    )  # fmt: skip


def _shift_summary(shifts: np.ndarray) -> dict[str, float]:
    """Median and largest position correction (pixels), and the largest per axis."""
    lengths = np.linalg.norm(shifts, axis=1)
    largest = np.abs(shifts).max(axis=0)
    return {"median": float(np.median(lengths)), "max": float(lengths.max()),
            "max_y": float(largest[0]), "max_x": float(largest[1])}  # fmt: skip


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
    if model is not None:
        load_model_bundle(model)  # a bad bundle is refused before the folder is made
    out = claim_output_folder(
        output_dir, command="reconstruct", inputs=[data, model, options.train_config], overwrite=overwrite
    )
    result = reconstruct_scan(scan, options, training_dir=out / "training", log=log, callback=callback)
    refinement = options.refinement
    device = str(resolve_device(options.device.accelerator, options.device.devices))
    refined, comparison, start = result.refinement, result.comparison, result.start
    extra = {} if refined.background is None else {"background": refined.background}
    initial_comparison, timings = result.initial_comparison, result.timings
    files = write_reconstruction(
        result.reconstruction, out, comparison=comparison, title=f"{Path(data).name} ({start} start)",
        extra_arrays={
            "probe": refined.probe,
            "positions_initial": scan.positions,
            "positions_refined": refined.positions,
            "loss": np.asarray(refined.loss_history, dtype=np.float64),
            **extra,
        },
    )  # fmt: skip
    if options.ptychodus_product:
        files["product.h5"] = write_product(
            result.reconstruction, scan, out / "product.h5", probe=refined.probe, losses=refined.loss_history
        )
    frc_summary = None
    if options.half_scan_frc:
        t0 = time.perf_counter()
        halves_config = dataclasses.replace(refinement, epochs=max(refined.epochs, 1), time_budget_s=None)
        halves = half_scan_frc_of(scan, None, refinement=halves_config, device=device)
        result.timings["half_scan_frc_s"] = time.perf_counter() - t0
        files["frc.png"] = out / "frc.png"
        plot_frc(halves, files["frc.png"], f"even/odd half-scan FRC ({refined.epochs} epochs each)")
        frc_summary = {name: {"resolution_px": frc.resolution_px, "resolution_m": frc.resolution_m}
                       for name, frc in halves.items()}  # fmt: skip
        log("half-scan FRC resolution: " + ", ".join(
            f"{name} {frc.resolution_px:.2f} px" for name, frc in halves.items()))  # fmt: skip
    loss_name = refinement.resolved().loss
    ylabels = {"poisson": "Poisson deviance per pixel", "gaussian": "0.5 (sqrt(lambda) - sqrt(I))^2 per px"}
    ylabel = ylabels.get(loss_name, "amplitude MAE")
    curve = write_loss_curve(refined.loss_history, out / "loss", title="physics refinement", ylabel=ylabel)
    files["loss.json"], files["loss.png"] = curve["json"], curve["png"]
    summary = {
        "data": os.fspath(data),
        "model": result.model,
        "start": start,
        "device": device,
        "options": options.to_dict(),
        "refinement": refinement.resolved().to_dict(),
        "batch_size_used": refined.batch_size,
        "probe_calibration_factor": refined.probe_scale,
        "phase_ramp_removed_rad_per_px": list(refined.phase_ramp),
        "position_shift_px": _shift_summary(refined.positions - scan.positions),
        "epochs": refined.epochs,
        "stop_reason": refined.stop_reason,
        "final_loss": refined.loss_history[-1] if refined.loss_history else None,
        "timings_s": timings,
        "metrics": comparison.to_dict() if comparison else None,
        "metrics_of_network_prediction": initial_comparison.to_dict() if initial_comparison else None,
        "half_scan_frc": frc_summary,
    }
    files["reconstruct.json"] = out / "reconstruct.json"
    write_json(files["reconstruct.json"], summary)
    metrics = {}
    if frc_summary is not None:
        metrics["half_scan_frc"] = frc_summary
    if comparison is not None:
        metrics["refined"] = comparison.to_dict()
    if initial_comparison is not None:
        metrics["network_prediction"] = initial_comparison.to_dict()
    files["report.html"] = write_report(
        out,
        f"Reconstruction of {Path(data).name} ({start} start, physics refinement)",
        images=[("amplitude", files["amplitude.png"]), ("phase", files["phase.png"]),
                ("refinement loss per epoch", files["loss.png"]),
                ("half-scan Fourier ring correlation", files.get("frc.png", "")),
                ("comparison with the ground truth", files.get("comparison.png", ""))],
        metrics=metrics or None,
        config={"refinement": refinement.resolved().to_dict()},
        details={k: v for k, v in summary.items() if not k.startswith(("refinement", "metrics"))},
    )  # fmt: skip
    result.files = files
    return result
