"""Workflow: judge a reconstruction (``ptychopinn evaluate``).

With a ground truth: the aligned metrics of :mod:`ptychopinn.evaluation` (MAE, PSNR, SSIM,
Pearson, FRC for amplitude and phase), ``metrics.json`` and a comparison figure. Without one,
from the scan's data: the Poisson deviance (and NLL) of the data under the reconstruction,
and optionally the FRC between independent reconstructions of the even and odd positions.
``infer`` and ``reconstruct`` write their metrics with the same code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..common import output_dir_option
from ..evaluation import FRCResult, ObjectComparison, compare_objects, fourier_ring_correlation
from ..io import Scan, ScanFileError, ScanValidationError, read_scan, write_json
from ..io.reconstruction import read_reconstruction
from ..io.safety import require_regular_file
from ..options import Options, option
from ..physics import extract_patches, poisson_deviance, poisson_nll
from ..physics.forward_models import ForwardModel, build_forward_model
from ..refine import RefinementConfig, RefinementResult, refine_object
from .figures import plot_comparison, plot_frc
from .geometry import scan_forward_model, scan_geometry
from .report import write_report
from .results import EvaluationResult
from .run_folder import claim_output_folder

load_reconstruction = read_reconstruction  # the name the workflows used

#: Metrics use pixels whose summed, normalised probe intensity reaches this (a tenth of one
#: probe peak): the region the data constrain, not the faint rim.
WELL_COVERED = 0.1


def load_ground_truth(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """The true object: from a scan file (NPZ/CXI with an object), or an array file.

    Array files: ``.npy`` holding the complex object, or ``.npz`` with ``object`` or
    ``objectGuess``. Returns the object and its pixel size (None when unknown).
    """
    path = Path(path)
    try:
        scan = read_scan(path)
        if scan.object is None:
            raise ScanValidationError(
                "the scan holds no object to compare with", source=str(path), key="objectGuess"
            )
        return scan.object, scan.pixel_size_m()
    except (ScanFileError, ScanValidationError) as scan_error:
        try:
            loaded = np.load(require_regular_file(path), allow_pickle=False)  # never a pipe
        except (OSError, ValueError):
            raise scan_error from None
        if isinstance(loaded, np.ndarray):
            return loaded.astype(np.complex64), None
        with loaded:
            key = next((k for k in ("object", "objectGuess") if k in loaded.files), None)
            if key is None:
                raise scan_error from None
            return loaded[key].astype(np.complex64), None


def _common_frame(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice]:
    """Both objects are in object pixels from the same origin: compare their common part."""
    return slice(0, min(a.shape[0], b.shape[0])), slice(0, min(a.shape[1], b.shape[1]))


def compare_to_truth(
    obj: np.ndarray,
    truth: np.ndarray | None,
    weight_sum: np.ndarray,
    *,
    pixel_size_m: float | None = None,
    remove_ramp: bool = False,
    register: bool = True,
) -> ObjectComparison | None:
    """Metrics against a ground truth on the well-covered region (None without a truth)."""
    if truth is None:
        return None
    rows, cols = _common_frame(obj, truth)
    obj, truth, weight_sum = obj[rows, cols], truth[rows, cols], weight_sum[rows, cols]
    well = weight_sum >= WELL_COVERED
    return compare_objects(
        obj, truth, well if well.any() else weight_sum > 0, pixel_size_m=pixel_size_m,
        remove_ramp=remove_ramp, register=register,
    )  # fmt: skip


def data_fidelity(
    obj: np.ndarray,
    probe: np.ndarray,
    positions: np.ndarray,
    counts: np.ndarray,
    mask: np.ndarray | None = None,
    batch_size: int = 256,
    background: np.ndarray | None = None,
    forward: ForwardModel | None = None,
) -> dict[str, float]:
    """Poisson NLL and deviance (per pixel, averaged) of measured counts under a reconstruction.

    Also ``poisson_deviance_noise_floor``: the deviance a perfect model would show, that of
    Poisson draws from the predicted counts (seeded); a fit near it has nothing left to explain.
    ``background``: an additive ``(N, N)`` background (counts) the reconstruction refined;
    ``forward``: the forward model it was refined through (default: the far field).
    """
    forward = forward if forward is not None else build_forward_model("far_field")
    obj_t = torch.from_numpy(obj.astype(np.complex64))[None]
    probe_t = torch.from_numpy(np.asarray(probe, np.complex64))
    mask_t = None if mask is None else torch.from_numpy(mask)
    size = counts.shape[-1]
    nll = deviance = floor = 0.0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for start in range(0, len(counts), batch_size):
            stop = min(start + batch_size, len(counts))
            where = torch.from_numpy(positions[start:stop])[None]
            predicted = forward.intensity(extract_patches(obj_t, where, size)[0], probe_t)
            if background is not None:
                predicted = predicted + torch.from_numpy(np.asarray(background, np.float32)).clamp_min(0)
            measured = torch.from_numpy(counts[start:stop])
            share = (stop - start) / len(counts)
            nll += float(poisson_nll(predicted, measured, mask_t)) * share
            deviance += float(poisson_deviance(predicted, measured, mask_t)) * share
            draws = torch.poisson(predicted.clamp_min(0), generator=generator)
            floor += float(poisson_deviance(predicted, draws, mask_t)) * share
    return {"poisson_nll": nll, "poisson_deviance": deviance, "poisson_deviance_noise_floor": floor}


def half_scan_frc(
    scan: str | os.PathLike | Scan,
    seconds: float | None = 20.0,
    seed: int = 0,
    *,
    refinement: RefinementConfig | None = None,
    device: str = "cpu",
) -> dict[str, FRCResult]:
    """FRC between independent reconstructions of the even and the odd positions.

    Each half is refined from a flat object with ``refinement`` (default: the default
    options), for ``seconds`` each when given; the halves are registered and compared on the
    region both cover well, after their linear phase ramps are removed. No ground truth
    needed.

    Parameters
    ----------
    scan : path or Scan
    seconds : float, optional
        Time budget of each half (overrides the one in ``refinement``).
    refinement : RefinementConfig, optional
        How each half is refined: use the options of the full reconstruction (probe
        refinement and modes for blind data).
    """
    scan = (scan if isinstance(scan, Scan) else read_scan(scan)).load()
    config = refinement if refinement is not None else RefinementConfig(seed=seed)
    if seconds is not None:
        config = dataclasses.replace(config, time_budget_s=seconds)
    halves = []
    for parity in (0, 1):
        index = np.arange(parity, scan.n_patterns, 2)
        halves.append(refine_object(
            scan.diffraction[index], scan.positions[index], scan.probe_modes, mask=scan.mask,
            config=config, device=device, remove_ramp=True, geometry=scan_geometry(scan, config),
        ))  # fmt: skip
    return frc_of_halves(halves[0], halves[1], scan.pixel_size_m())


def _refinement_of(reconstruction: Path) -> RefinementConfig | None:
    """The refinement options ``reconstruct`` recorded beside a reconstruction, if any."""
    summary = Path(reconstruction).parent / "reconstruct.json"
    try:
        options = json.loads(summary.read_text())["refinement"]
        known = {f.name for f in dataclasses.fields(RefinementConfig)}
        return RefinementConfig(**{k: v for k, v in options.items() if k in known})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def frc_of_halves(first: RefinementResult, second: RefinementResult, pixel_size_m: float | None) -> dict:
    """Amplitude and phase FRC of two half-scan reconstructions, registered on their overlap."""
    rows, cols = _common_frame(first.object, second.object)
    well = (first.illumination[rows, cols] >= WELL_COVERED) & (
        second.illumination[rows, cols] >= WELL_COVERED
    )
    comparison = compare_objects(first.object[rows, cols], second.object[rows, cols], well, remove_ramp=True)
    ref, est = comparison.reference, comparison.aligned
    return {
        "amplitude": fourier_ring_correlation(np.abs(ref), np.abs(est), pixel_size_m=pixel_size_m),
        "phase": fourier_ring_correlation(np.angle(ref), np.angle(est), pixel_size_m=pixel_size_m),
    }


def write_metrics(path: Path, metrics: dict[str, object]) -> None:
    write_json(path, metrics)


@dataclass(frozen=True)
class EvaluateOptions(Options):
    """What :func:`evaluate` judges a reconstruction against, and how.

    Attributes
    ----------
    ground_truth : str or None
        Scan file with an object, or an array file (see :func:`load_ground_truth`).
    data : str or None
        The scan: adds the data fidelity (Poisson NLL and deviance) of the reconstruction.
    remove_ramp, register : bool
        Alignment options of :func:`~ptychopinn.evaluation.compare_objects`.
    half_scan_seconds : float or None
        With ``data``: also the even/odd half-scan FRC, refining each half this long.
    """

    section = "evaluate"
    ground_truth: str | None = option(
        None, "scan file with an object, or .npy/.npz array", flags=("--ground-truth", "--ground_truth"),
        path=True, metavar="FILE",
    )  # fmt: skip
    data: str | None = option(
        None, "the scan file, for data fidelity and half-scan FRC", flags=("--data",), path=True,
        metavar="FILE",
    )  # fmt: skip
    remove_ramp: bool = option(False, "also remove a linear phase ramp", flags=("--remove-ramp",))
    register: bool = option(True, "register a sub-pixel shift before comparing", flags=("--register",))
    half_scan_seconds: float | None = option(
        None, "with --data: FRC of even/odd half reconstructions refined this long each",
        flags=("--half-scan-seconds",), metavar="SECONDS", minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip

    def check(self) -> None:
        if self.ground_truth is None and self.data is None:
            raise ValueError("nothing to evaluate against: give --ground-truth and/or --data")


def evaluate(
    reconstruction: str | os.PathLike,
    output_dir: str | os.PathLike,
    options: EvaluateOptions,
    *,
    overwrite: bool = False,
) -> EvaluationResult:
    """Evaluate a reconstruction; writes ``metrics.json`` (and ``comparison.png`` with a truth).

    Parameters
    ----------
    reconstruction : path
        ``reconstruction.npz`` (or its folder).
    output_dir : path
    options : EvaluateOptions
        The ground truth and/or the data to judge against (one at least), and the alignment.
    overwrite : bool
        Replace an earlier evaluation's outputs in ``output_dir`` (refused otherwise).

    Examples
    --------
    >>> EvaluateOptions(ground_truth="scan.npz", remove_ramp=True).register
    True
    """
    ground_truth, data = options.ground_truth, options.data
    recon = load_reconstruction(reconstruction)
    out = claim_output_folder(
        output_dir, command="evaluate", overwrite=overwrite, inputs=[recon.path, ground_truth, data]
    )
    metrics: dict[str, object] = {"reconstruction": str(recon.path)}
    files: dict[str, Path] = {}
    comparison = None
    if ground_truth is not None:
        truth, truth_pixel = load_ground_truth(ground_truth)
        comparison = compare_to_truth(
            recon.object, truth, recon.weight_sum, pixel_size_m=recon.pixel_size_m or truth_pixel,
            remove_ramp=options.remove_ramp, register=options.register,
        )  # fmt: skip
        metrics["ground_truth"] = os.fspath(ground_truth)
        metrics.update(comparison.to_dict())
        files["comparison.png"] = out / "comparison.png"
        plot_comparison(comparison, files["comparison.png"])
    if data is not None:
        scan = read_scan(data).load()
        positions = recon.positions if recon.positions is not None else scan.positions
        if len(positions) != scan.n_patterns:
            positions = scan.positions
        probe = recon.probe if recon.probe is not None else scan.probe_modes
        metrics["data"] = os.fspath(data)
        # the misfit through the model the reconstruction was refined through (its record)
        recorded = _refinement_of(recon.path)
        forward = scan_forward_model(scan, recorded if recorded is not None else RefinementConfig())
        metrics["forward_model"] = forward.describe()
        # the whole canvas where stored: unlit pixels still reach the detector in the near field
        obj = recon.canvas if recon.canvas is not None else recon.object
        metrics["data_fidelity"] = data_fidelity(
            obj, probe, positions, scan.diffraction, scan.mask, background=recon.background, forward=forward
        )
        if options.half_scan_seconds:
            halves = half_scan_frc(scan, options.half_scan_seconds, refinement=recorded)
            metrics["half_scan_frc"] = {name: frc.to_dict() for name, frc in halves.items()}
            files["frc.png"] = out / "frc.png"
            plot_frc(halves, files["frc.png"], "even/odd half-scan FRC")
    files["metrics.json"] = out / "metrics.json"
    write_metrics(files["metrics.json"], metrics)
    files["report.html"] = write_report(
        out,
        f"Evaluation of {recon.path}",
        images=[
            ("comparison with the ground truth", files.get("comparison.png", "")),
            ("half-scan Fourier ring correlation", files.get("frc.png", "")),
        ],
        metrics={k: v for k, v in metrics.items() if k not in ("reconstruction", "ground_truth", "data")},
        details={k: metrics[k] for k in ("reconstruction", "ground_truth", "data") if k in metrics},
    )
    return EvaluationResult(metrics=metrics, comparison=comparison, files=files)


@dataclass(frozen=True)
class EvaluateInputs(Options):
    """With --ground-truth: aligned metrics (MAE, PSNR and SSIM with an explicit data range,
    Pearson, FRC with the 1/2-bit threshold) for amplitude and phase, metrics.json and
    comparison.png. With --data: the Poisson NLL and deviance of the data under the
    reconstruction, and with --half-scan-seconds the FRC of even/odd half-scan
    reconstructions."""

    section = "evaluate"
    reconstruction: str = option(
        None, "reconstruction.npz (or its folder)", flags=("--reconstruction",), path=True, required=True,
        metavar="FILE",
    )  # fmt: skip
    output_dir: str = output_dir_option("folder for metrics.json, comparison.png")
