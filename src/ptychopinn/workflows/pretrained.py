"""Pretrained bundles shipped with the package, and picking one whose probe matches a scan.

The bundles lie in ``ptychopinn/pretrained/`` (package data); each has a JSON note beside it
with the exact command and budget that trained it (see ``docs/pretraining.md``).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import numpy as np

from ..io import BundleError, read_bundle

log = logging.getLogger("ptychopinn")

#: Normalised overlap |<P, Q>| / (|P| |Q|) above which two probes count as the same set-up.
PROBE_MATCH = 0.99


def shipped_bundles() -> list[Path]:
    """The pretrained bundles shipped with the package (sorted by name)."""
    folder = resources.files("ptychopinn") / "pretrained"
    if not folder.is_dir():
        return []
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".zip"))


def probe_overlap(first: np.ndarray, second: np.ndarray) -> float:
    """``|<P, Q>| / (|P| |Q|)`` over all modes (1: the same probe up to scale and phase)."""
    a = np.asarray(first, dtype=np.complex128).reshape(-1)
    b = np.asarray(second, dtype=np.complex128).reshape(-1)
    if a.shape != b.shape:
        return 0.0
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(abs(np.vdot(a, b)) / norm) if norm > 0 else 0.0


def matching_bundle(probe: np.ndarray, *, gridsize: int | None = None) -> Path | None:
    """A shipped pretrained bundle made for this probe (same N, overlap >= 0.99), or None.

    ``gridsize`` restricts the search to bundles of that gridsize; by default any will do
    (a bundle groups the scan's patterns by its own gridsize).
    """
    probe = np.asarray(probe)
    probe = probe if probe.ndim == 3 else probe[None]
    for bundle in shipped_bundles():
        try:
            manifest, tensors = read_bundle(bundle)  # verified: hashes, format
        except BundleError as exc:
            log.warning("skipping shipped bundle %s: %s", bundle.name, exc)
            continue
        if (gridsize is not None and int(manifest.get("gridsize", 0)) != gridsize) or int(
            manifest.get("pattern_size", 0)
        ) != probe.shape[-1]:
            continue
        key = manifest.get("probe_key", "net.forward_model.probe_real")
        if key not in tensors:
            continue
        stored = tensors[key].numpy()
        stored = stored[..., 0] + 1j * stored[..., 1]
        if stored.shape == probe.shape and probe_overlap(stored, probe) >= PROBE_MATCH:
            return bundle
    return None
