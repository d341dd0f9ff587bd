"""Writing reconstructions: arrays (NPZ, TIFF), pictures (PNG) and metrics (JSON)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile
from matplotlib.figure import Figure

from ..evaluation import ObjectComparison
from ..io import Scan, atomic_path, write_json, write_ptychodus_product
from ..io.reconstruction import write_reconstruction_npz
from .results import Reconstruction


def _save_png(
    image: np.ndarray, mask: np.ndarray, path: Path, title: str, label: str, cmap: str | None
) -> None:
    """``cmap`` None: a phase map, cyclic only when its range is near 2 pi."""
    from .figures import phase_colormap

    shown = np.where(mask, image, np.nan)
    # colour limits from the 0.5 .. 99.5 percentiles: a few rim pixels must not wash out the rest
    low, high = np.nanpercentile(shown, [0.5, 99.5]) if mask.any() else (0.0, 1.0)
    cmap = cmap or phase_colormap(float(low), float(high))
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    handle = ax.imshow(shown, cmap=cmap, interpolation="nearest", vmin=low, vmax=high)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    fig.colorbar(handle, ax=ax, label=label)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def write_reconstruction(
    reconstruction: Reconstruction,
    output_dir: str | os.PathLike,
    *,
    comparison: ObjectComparison | None = None,
    title: str = "reconstruction",
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write a reconstruction's files atomically; returns them by name.

    - ``reconstruction.npz``: ``object`` (complex64), ``amplitude``, ``phase`` (float32),
      ``coverage`` (bool), ``weight_sum`` (float32), ``positions`` ((n, 2) float64, (y, x)
      object pixels), ``pixel_size_m`` (float64, NaN when unknown);
    - ``amplitude.tiff``, ``phase.tiff``: float32 images;
    - ``amplitude.png``, ``phase.png``: pictures with colour bars (uncovered pixels blank);
    - ``metrics.json`` and ``comparison.png`` when a comparison with ground truth is given.

    ``extra_arrays`` are stored in ``reconstruction.npz`` beside those (e.g. a refined probe).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    obj = reconstruction.object
    amplitude = np.abs(obj).astype(np.float32)
    phase = np.angle(obj).astype(np.float32)
    files = {
        name: out / name
        for name in (
            "reconstruction.npz",
            "amplitude.tiff",
            "phase.tiff",
            "amplitude.png",
            "phase.png",
        )
    }
    write_reconstruction_npz(
        files["reconstruction.npz"], obj, coverage=reconstruction.coverage,
        weight_sum=reconstruction.weight_sum, positions=reconstruction.positions,
        pixel_size_m=reconstruction.pixel_size_m, extra_arrays=extra_arrays,
    )  # fmt: skip
    for name, image in (("amplitude.tiff", amplitude), ("phase.tiff", phase)):
        with atomic_path(files[name]) as tmp:
            tifffile.imwrite(tmp, image)
    _save_png(
        amplitude,
        reconstruction.coverage,
        files["amplitude.png"],
        f"{title}: amplitude",
        "amplitude",
        "gray",
    )
    _save_png(
        phase,
        reconstruction.coverage,
        files["phase.png"],
        f"{title}: phase",
        "phase (rad)",
        None,
    )
    if comparison is not None:
        from .figures import plot_comparison

        files["metrics.json"] = out / "metrics.json"
        write_json(files["metrics.json"], comparison.to_dict())
        files["comparison.png"] = out / "comparison.png"
        plot_comparison(comparison, files["comparison.png"])
    return files


def write_loss_curve(
    losses: list[float],
    path_stem: str | os.PathLike,
    title: str,
    xlabel: str = "epoch",
    ylabel: str = "loss",
) -> dict[str, Path]:
    """Write a loss history as ``STEM.json`` and a picture ``STEM.png``."""
    stem = Path(path_stem)
    files = {"json": stem.with_suffix(".json"), "png": stem.with_suffix(".png")}
    write_json(files["json"], {"loss": [float(v) for v in losses]}, indent=1)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(np.arange(1, len(losses) + 1), losses, marker="." if len(losses) < 50 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(losses) and min(losses) > 0:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(files["png"]) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return files


def check_product_metadata(scan: Scan) -> None:
    """Raise ValueError unless the scan states what a ptychodus product must (call it before the work)."""
    meta = scan.metadata
    missing = [label for label, value in (("photon energy", meta.energy_ev),
               ("detector distance", meta.detector_distance_m), ("object pixel size", scan.pixel_size_m()))
               if value is None]  # fmt: skip
    if missing:
        raise ValueError(
            f"{scan.source}: a ptychodus product needs the {', '.join(missing)}; the scan does not state it"
        )


def write_product(
    reconstruction: Reconstruction,
    scan: Scan,
    path: str | os.PathLike,
    *,
    probe: np.ndarray | None = None,
    losses: list[float] | np.ndarray | None = None,
    name: str | None = None,
) -> Path:
    """Write a reconstruction as a ptychodus ``product.h5`` (atomically).

    The object outside the scanned area is 1 (free space), so ptychodus can continue from
    it. Positions keep the metres of a scan read from ptychodus (its frame origin is in
    the scan's metadata); other scans put object pixel (0, 0) at 0 m. Scan indexes are
    the scan's own when they are unique (ptychodus data), else ``0 .. n-1``.

    Raises
    ------
    ValueError
        The scan lacks the photon energy, the detector distance or the pixel size, which a
        ptychodus product must state.
    """
    check_product_metadata(scan)
    meta = scan.metadata
    pixel = reconstruction.pixel_size_m or scan.pixel_size_m()
    indexes = scan.scan_index
    if indexes is None or len(np.unique(indexes)) != scan.n_patterns:
        indexes = np.arange(scan.n_patterns)
    photons = meta.photons_per_pattern or float(scan.total_counts().mean())
    write_ptychodus_product(
        path,
        object=np.where(reconstruction.coverage, reconstruction.object, 1).astype(np.complex64),
        probe=scan.probe_modes if probe is None else probe,
        positions=reconstruction.positions,
        pixel_size_m=pixel,
        origin_m=(meta.origin_y_m or 0.0, meta.origin_x_m or 0.0),
        position_indexes=indexes,
        energy_ev=meta.energy_ev,
        detector_distance_m=meta.detector_distance_m,
        probe_photon_count=photons,
        losses=losses,
        name=name or Path(scan.source or "ptychopinn").stem,
        comments="reconstructed with ptychopinn",
    )
    return Path(path)
