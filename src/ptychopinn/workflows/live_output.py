"""Live reconstruction, the writers: the pictures, ``reconstruction.npz``, ``live.json`` and
``live.html`` that ``watch`` rewrites every ``update_seconds`` (each file atomically)."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io import atomic_path, write_json
from ..io.reconstruction import write_reconstruction_npz
from ..physics import GrowingStitcher

#: the live files, rewritten in place
LIVE_FILES = ("phase.png", "amplitude.png", "reconstruction.npz", "live.html", "live.json")


def mosaic_arrays(mosaic: GrowingStitcher) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mosaic's object, coverage, weight sum and origin now (the caller holds its lock)."""
    obj, coverage = mosaic.picture()
    return obj, coverage, mosaic.weight_sum(), mosaic.origin.copy()


def write_live(
    out: Path, arrays: tuple[np.ndarray, ...], status: dict, refresh_s: float, log: Callable[[str], None]
) -> None:
    """Write the mosaic's ``arrays`` (:func:`mosaic_arrays`) and the status into ``out``, and log
    one status line; the picture is moved into the scan's frame first (:func:`in_scan_frame`)."""
    obj, coverage, weight_sum, origin = in_scan_frame(*arrays)
    if obj.size:
        phase = np.angle(obj)
        _png(out / "phase.png", phase, coverage, "twilight" if np.ptp(phase[coverage]) > 5.5 else "viridis")
        _png(out / "amplitude.png", np.abs(obj), coverage, "gray")
        write_reconstruction_npz(
            out / "reconstruction.npz", obj, coverage=coverage, weight_sum=weight_sum,
            extra_arrays={"origin": origin},
        )  # fmt: skip
    write_json(out / "live.json", status)
    with atomic_path(out / "live.html") as tmp:
        tmp.write_text(_live_html(status, refresh_s))
    latency = (
        "-"
        if status["latency_median_s"] is None
        else f"{status['latency_median_s']:.3f} s (p99 {status['latency_p99_s']:.3f} s)"
    )
    log(
        f"watch: {status['elapsed_s']:.1f} s, frames received {status['frames_received']}, reconstructed "
        f"{status['frames_reconstructed']}, {status['frames_per_second']:.1f} frames/s, latency {latency}, "
        f"backlog {status['backlog']}"
    )


def in_scan_frame(
    obj: np.ndarray, coverage: np.ndarray, weight_sum: np.ndarray, origin: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The live canvas moved into the scan's frame (pixel (0, 0) at the scan's origin), as every
    ``reconstruction.npz`` is, so ``evaluate`` reads it; kept as it is (with its ``origin``) when
    that would cut covered pixels (a scan with positions below N/2)."""
    oy, ox = (int(v) for v in origin)
    if (oy < 0 and coverage[:-oy].any()) or (ox < 0 and coverage[:, :-ox].any()):
        return obj, coverage, weight_sum, origin
    arrays = []
    for values in (obj, coverage, weight_sum):
        values = values[max(0, -oy) :, max(0, -ox) :]
        arrays.append(np.pad(values, ((max(0, oy), 0), (max(0, ox), 0))))
    return arrays[0], arrays[1], arrays[2], np.zeros(2, dtype=np.int64)


def _png(path: Path, image: np.ndarray, mask: np.ndarray, cmap: str) -> None:
    """A quick picture (no axes): the live view is redrawn every few seconds."""
    from matplotlib import colormaps
    from PIL import Image

    shown = image[mask] if mask.any() else np.zeros(1)
    low, high = np.percentile(shown, [0.5, 99.5]) if shown.size > 1 else (0.0, 1.0)
    scaled = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    rgba = (colormaps[cmap](scaled) * 255).astype(np.uint8)
    rgba[~mask] = 255
    with atomic_path(path) as tmp:
        Image.fromarray(rgba).save(tmp, format="PNG")


def _live_html(status: dict, refresh_s: float) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in status.items()
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" '
        f'content="{max(1, round(refresh_s))}"><title>ptychopinn watch</title></head><body>'
        f"<h1>ptychopinn watch</h1><table>{rows}</table>"
        '<p><img src="phase.png" alt="phase"> <img src="amplitude.png" alt="amplitude"></p>'
        "</body></html>"
    )
