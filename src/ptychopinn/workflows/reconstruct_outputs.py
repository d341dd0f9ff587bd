"""The outputs of ``reconstruct``, written by one function: the picture and its arrays, the
refined probe and positions, the loss curve, the optional ptychodus product and half-scan
FRC, ``reconstruct.json`` (the options as resolved, so the record says what ran) and the report."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io import Scan, write_json
from ..options import Options
from .evaluation import half_scan_frc as half_scan_frc_of
from .figures import plot_frc
from .outputs import write_loss_curve, write_product, write_reconstruction
from .report import write_report
from .results import ReconstructResult


def write_reconstruct_outputs(
    result: ReconstructResult,
    scan: Scan,
    out: Path,
    options: Options,
    *,
    data: str | os.PathLike,
    device: str,
    log: Callable[[str], None],
) -> dict[str, Path]:
    """Write every output of a finished reconstruction of ``data`` into ``out``; the files by name.

    ``options`` are the :class:`~ptychopinn.workflows.reconstruction.ReconstructOptions` it ran with.
    """
    refinement = options.refinement
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
            "object_canvas": np.asarray(refined.object, dtype=np.complex64),
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
        "forward_model": result.forward_model,
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
    return files


def _shift_summary(shifts: np.ndarray) -> dict[str, float]:
    """Median and largest position correction (pixels), and the largest per axis."""
    lengths = np.linalg.norm(shifts, axis=1)
    largest = np.abs(shifts).max(axis=0)
    return {"median": float(np.median(lengths)), "max": float(lengths.max()),
            "max_y": float(largest[0]), "max_x": float(largest[1])}  # fmt: skip
