"""Live reconstruction, the source: what ``watch`` follows and the network that predicts it.

The growing file or folder is opened when it exists (``watch`` may start before the scan);
the network is the one given, or the shipped pretrained network made for the source's
probe, loaded on its device with every batch shape it will meet prepared before the first
frame can arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import ScanFileError
from ..io.safety import HDF5_SIGNATURE
from ..io.stream import open_stream
from ..models.batching import bucket_sizes
from .bundles import load_model_bundle
from .inference import AUTO_PATTERNS
from .pretrained import matching_bundle


def live_block_size(device: torch.device, size: int) -> int:
    """Frames per network pass: the inference batch for the device, in N = 128 patterns.

    On a CPU small batches stay in cache (at N = 128, 32 patterns per pass were 4.8x faster
    than 1024, docs/benchmarks.md); a smaller N takes proportionally more frames.
    """
    patterns = AUTO_PATTERNS.get(device.type, 256)
    return int(min(4096, max(1, patterns * max(1, (128 // size) ** 2))))


@dataclass
class LiveNetwork:
    """The network of a watch, on its device, with every batch shape it will meet prepared."""

    path: str
    module: torch.nn.Module
    size: int
    block_size: int
    scale: float | None  # None: per-scan normalisation, from the first frames

    @classmethod
    def load(cls, path: str, device: torch.device, max_block: int | None) -> LiveNetwork:
        loaded = load_model_bundle(path)
        if loaded.gridsize != 1:
            raise ValueError(
                f"{path}: watch needs a gridsize-1 network; this one has gridsize {loaded.gridsize}"
            )
        if int(loaded.manifest.get("config", {}).get("data", {}).get("detector_bin", 1)) != 1:
            raise ValueError(f"{path}: watch takes networks trained on unbinned patterns")
        module = loaded.module.to(device).eval()
        size = int(module.hparams.size)
        block_size = max_block or live_block_size(device, size)
        # on a GPU, batches are padded to a few sizes, each prepared now (a new shape costs its
        # FFT plans and kernel choices when first met); a CPU takes any size
        buckets = bucket_sizes(block_size) if device.type == "cuda" else [1, block_size]
        with torch.no_grad():
            for frames in buckets:
                module.net.predict_patches(
                    torch.zeros(frames, 1, size, size, device=device),
                    torch.zeros(frames, 1, 2, device=device),
                )
        per_scan = module.hparams.get("input_normalisation", "frozen") == "per_scan"
        return cls(str(path), module, size, block_size, None if per_scan else float(module.input_scale))


def _may_become_followable(path: Path) -> bool:
    """A folder, an empty file or an HDF5 file (its writer not yet in SWMR mode)."""
    if path.is_dir():
        return True
    with open(path, "rb") as handle:
        head = handle.read(8)
    return len(head) < 8 or head == HDF5_SIGNATURE


def open_when_ready(source: str | Path, keys: dict, timeout_s: float, log: Callable[[str], None]):
    """The source, waited for up to ``timeout_s`` when it does not exist yet (watch started first)."""
    deadline = time.time() + timeout_s
    told = False
    while True:
        if Path(source).exists():
            try:
                return open_stream(source, **keys)
            except ScanFileError:
                # an HDF5 file being created (or an empty one) may become followable; any
                # other file will not: say so now, not after the timeout
                if time.time() > deadline or not _may_become_followable(Path(source)):
                    raise
        elif time.time() > deadline:
            raise ScanFileError(f"did not appear within {timeout_s:g} s (--idle-timeout)", source=str(source))
        if not told:
            log(f"watch: waiting for {source}")
            told = True
        time.sleep(0.05)


def network_for(model: str | None, probe: np.ndarray | None) -> str:
    """The bundle to use: the one given, else a shipped pretrained network made for the probe."""
    if model:
        return str(model)
    if probe is None:
        raise ValueError("give --model: the source holds no probe to find a shipped network for")
    match = matching_bundle(probe, gridsize=1)
    if match is None:
        raise ValueError(
            "no shipped pretrained network matches the scan's probe; give --model BUNDLE "
            "(from train or pretrain)"
        )
    return str(match)
