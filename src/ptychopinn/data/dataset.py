"""Torch datasets of grouped diffraction patterns, and the one input normalisation.

Network input (docs/conventions.md, "Network input"): ``x = sqrt(I) * c``, one scalar c per dataset
chosen on the training set so that the mean over patterns of ``sum x^2`` is ``(N/2)^2``;
frozen and reused at inference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..io import Scan
from .grouping import Groups


def input_scale(
    scan: Scan, indices: np.ndarray | None = None, batch_size: int = 4096, totals: np.ndarray | None = None
) -> float:
    """The normalisation constant c for a scan (or a subset of its patterns).

    ``c = sqrt((N/2)^2 / mean_k sum I_k)``, the mean taken in float64. ``totals`` (the
    scan's :meth:`~ptychopinn.io.Scan.total_counts`, when already known) saves a pass over the data.

    Raises
    ------
    ValueError
        If the selected patterns hold no counts at all.
    """
    totals = scan.total_counts(batch_size) if totals is None else totals
    if indices is not None:
        totals = totals[np.asarray(indices)]
    mean_total = float(totals.mean()) if totals.size else 0.0
    if not mean_total > 0:
        raise ValueError(f"{scan.source}: the selected diffraction patterns hold no counts")
    return float(np.sqrt((scan.pattern_size / 2) ** 2 / mean_total))


class GroupedDiffraction(Dataset):
    """One item per group: normalised amplitudes, counts, offsets (and truth when asked).

    Parameters
    ----------
    scan : Scan
        Source of the patterns (read lazily when the scan is lazy).
    groups : Groups
        Groups with indices into ``scan``.
    scale : float
        The frozen input normalisation constant c.
    with_truth : bool
        Also return the ground-truth patches (``scan.patches``), for supervised training.

    Items are dictionaries of tensors: ``x`` ``(C, N, N)`` float32 network input, ``counts``
    ``(C, N, N)`` float32 measured counts, ``offsets`` ``(C, 2)`` float32, ``indices``
    ``(C,)`` int64, and ``truth`` ``(C, N, N)`` complex64 when requested.
    """

    def __init__(self, scan: Scan, groups: Groups, scale: float, with_truth: bool = False):
        if groups.indices.size and (groups.indices.min() < 0 or groups.indices.max() >= scan.n_patterns):
            raise ValueError("group indices fall outside the scan")
        if with_truth and scan.patches is None:
            raise ValueError(
                f"{scan.source}: supervised training needs ground-truth patches "
                "('Y' in NPZ files; simulate with --include-patches)"
            )
        self.scan = scan
        self.groups = groups
        self.scale = float(scale)
        self.with_truth = with_truth

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = self.groups.indices[item]
        counts = torch.from_numpy(self.scan.get_patterns(index))
        sample = {
            "x": torch.sqrt(counts) * self.scale,
            "counts": counts,
            "offsets": torch.from_numpy(self.groups.offsets[item].astype(np.float32)),
            "indices": torch.from_numpy(index),
        }
        if self.with_truth:
            sample["truth"] = torch.from_numpy(self.scan.patches[index])
        return sample


def make_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader whose shuffling is fixed by ``seed`` (workers are seeded by Lightning)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=generator,
    )
