"""Pictures of scans for people: object, probe, a diffraction pattern, the trajectory."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure  # drawn to files without pyplot: no backend is switched

from ..io import Scan, atomic_path

#: A cyclic colour map only for phase ranges at least this share of 2 pi: on a narrower
#: range it paints both ends (say 0 and 0.6 rad) in one colour.
CYCLIC_RANGE_SHARE = 0.8


def phase_colormap(low: float, high: float) -> str:
    """``twilight`` (cyclic) for a phase range near 2 pi, else ``viridis`` (sequential)."""
    return "twilight" if high - low >= CYCLIC_RANGE_SHARE * 2 * np.pi else "viridis"


def _phase_panel(fig, ax, phase: np.ndarray, title: str) -> None:
    _panel(fig, ax, phase, title, phase_colormap(float(np.min(phase)), float(np.max(phase))), "rad")


def _panel(fig, ax, image: np.ndarray, title: str, cmap: str, label: str) -> None:
    shown = ax.imshow(image, cmap=cmap, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=label)


def plot_scan_overview(scan: Scan, path: str | os.PathLike, title: str | None = None) -> None:
    """Save a 2 x 3 overview of a scan as PNG (atomically).

    Panels: object amplitude and phase (if the scan has an object) with the scan positions,
    probe amplitude and phase, the first diffraction pattern (log counts) and the mean pattern.
    """
    fig = Figure(figsize=(13, 8))
    axes = fig.subplots(2, 3)
    if scan.object is not None:
        _panel(fig, axes[0, 0], np.abs(scan.object), "object amplitude", "gray", "amplitude")
        _phase_panel(fig, axes[1, 0], np.angle(scan.object), "object phase")
        axes[0, 0].plot(scan.positions[:, 1], scan.positions[:, 0], ".", color="tab:orange", ms=2)
    else:
        axes[0, 0].plot(scan.positions[:, 1], scan.positions[:, 0], ".", ms=2)
        axes[0, 0].invert_yaxis()
        axes[0, 0].set_aspect("equal")
        axes[0, 0].set_title("scan positions (object pixels)", fontsize=10)
        axes[1, 0].axis("off")
    probe = scan.probe_modes[0]
    _panel(fig, axes[0, 1], np.abs(probe), "probe amplitude", "viridis", "sqrt(counts)")
    _phase_panel(fig, axes[1, 1], np.angle(probe), "probe phase")
    first = scan.get_patterns(0)
    _panel(fig, axes[0, 2], np.log10(first + 1), "pattern 0, log10(counts + 1)", "magma", "log10")
    mean = np.zeros_like(first, dtype=np.float64)
    for _, block in scan.iter_batches(4096):
        mean += block.sum(axis=0, dtype=np.float64)
    mean /= scan.n_patterns
    _panel(fig, axes[1, 2], np.log10(mean + 1), "mean pattern, log10(counts + 1)", "magma", "log10")
    fig.suptitle(title or f"{scan.source}: {scan.n_patterns} patterns of {scan.pattern_size}^2")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def plot_comparison(comparison, path: str | os.PathLike) -> None:
    """Save ground truth, reconstruction and error for amplitude and phase, and FRC curves.

    ``comparison`` is an :class:`~ptychopinn.evaluation.ObjectComparison` (aligned arrays).
    """
    ref, est = comparison.reference, comparison.aligned
    fig = Figure(figsize=(18, 8.5))
    axes = fig.subplots(2, 4)
    rows = (
        ("amplitude", np.abs(ref), np.abs(est), "gray", comparison.amplitude),
        ("phase", np.angle(ref), np.angle(est), None, comparison.phase),
    )
    for row, (name, truth, recon, cmap, metrics) in enumerate(rows):
        low, high = float(truth.min()), float(truth.max())
        cmap = cmap or phase_colormap(low, high)
        for col, (image, label) in enumerate(((truth, "ground truth"), (recon, "reconstruction"))):
            shown = axes[row, col].imshow(image, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            axes[row, col].set_title(f"{name}: {label}", fontsize=10)
            fig.colorbar(shown, ax=axes[row, col], fraction=0.046, pad=0.04)
        error = recon - truth
        limit = float(np.abs(error).max()) or 1.0
        shown = axes[row, 2].imshow(error, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        axes[row, 2].set_title(
            f"{name}: error (SSIM {metrics.ssim:.3f}, PSNR {metrics.psnr_db:.1f} dB, "
            f"r {metrics.pearson:.3f})",
            fontsize=9,
        )
        fig.colorbar(shown, ax=axes[row, 2], fraction=0.046, pad=0.04)
        ax = axes[row, 3]
        if metrics.frc is not None:
            ax.plot(metrics.frc.frequency, metrics.frc.frc, label="FRC")
            ax.plot(metrics.frc.frequency, metrics.frc.threshold, "--", label="1/2-bit threshold")
            ax.set_xlabel("spatial frequency (cycles / pixel)")
            ax.set_ylim(-0.1, 1.05)
            resolution = f"{metrics.frc.resolution_px:.2f} px"
            if metrics.frc.resolution_m is not None:
                resolution += f" = {metrics.frc.resolution_m * 1e9:.1f} nm"
            ax.set_title(f"{name} FRC: resolution {resolution}", fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        for col in range(3):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")


def plot_frc(curves: dict, path: str | os.PathLike, title: str) -> None:
    """Save FRC curves (name -> :class:`~ptychopinn.evaluation.FRCResult`) with the threshold."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    threshold = None
    for name, frc in curves.items():
        resolution = f"{frc.resolution_px:.2f} px"
        if frc.resolution_m is not None:
            resolution += f" = {frc.resolution_m * 1e9:.1f} nm"
        ax.plot(frc.frequency, frc.frc, label=f"{name} (resolution {resolution})")
        threshold = frc
    if threshold is not None:
        ax.plot(threshold.frequency, threshold.threshold, "k--", label="1/2-bit threshold")
    ax.set_xlabel("spatial frequency (cycles / pixel)")
    ax.set_ylabel("FRC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
