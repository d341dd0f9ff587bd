"""Grouping scan positions into solution regions (docs/conventions.md, "Grouping").

For each seed position: its K nearest neighbours (KD-tree), C - 1 of them drawn with a seeded
generator, and the group ``{seed, neighbours}``. Offsets ``r_k = pos_k - centroid``; the
centroid is the group's global position. Vectorised: no Python loop over groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Groups:
    """Groups of scan positions.

    Attributes
    ----------
    indices : numpy.ndarray
        ``(G, C)`` int64 pattern indices; column 0 is the seed position.
    offsets : numpy.ndarray
        ``(G, C, 2)`` float64 ``(y, x)`` offsets of each position from its group centroid.
    centroids : numpy.ndarray
        ``(G, 2)`` float64 group centroids in object pixels.
    """

    indices: np.ndarray
    offsets: np.ndarray
    centroids: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def channels(self) -> int:
        return int(self.indices.shape[1])


def _seed_positions(n_positions: int, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Seeds for ``n_groups`` groups: each position once per round, rounds shuffled."""
    rounds = -(-n_groups // n_positions)
    return np.concatenate([rng.permutation(n_positions) for _ in range(rounds)])[:n_groups]


def group_positions(
    positions: np.ndarray,
    gridsize: int = 1,
    n_groups: int | None = None,
    k_neighbors: int | None = None,
    seed: int = 0,
) -> Groups:
    """Group scan positions into sets of C = gridsize^2 nearest neighbours.

    Parameters
    ----------
    positions : numpy.ndarray
        ``(n, 2)`` ``(y, x)`` object pixels, any scan geometry.
    gridsize : int
        g; C = g^2 positions per group. g = 1 gives single-position groups (no overlap term).
    n_groups : int, optional
        Number of groups. Default: one per position (g = 1: every position in order). With
        more groups than positions (g > 1), seeds repeat and draw other neighbour sets; at
        most ``n`` (g = 1) or ``n * comb(K, C - 1)`` distinct groups exist, and more is an
        error (never silently repeated patterns).
    k_neighbors : int, optional
        K, the neighbourhood the C - 1 partners are drawn from; default ``2C - 1``, capped at
        ``n - 1``. Must be at least ``C - 1``.
    seed : int
        Fixes the seed order and the draws.

    Returns
    -------
    Groups
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) == 0:
        raise ValueError(f"positions must have shape (n, 2) with n >= 1, got {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError("positions hold non-finite values")
    if gridsize < 1:
        raise ValueError(f"gridsize must be >= 1, got {gridsize}")
    n = len(positions)
    channels = gridsize**2
    if n_groups is not None and n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    rng = np.random.default_rng(seed)

    if channels == 1:
        if n_groups is not None and n_groups > n:
            raise ValueError(
                f"n_groups = {n_groups} exceeds the {n} positions of the scan: with gridsize 1 each "
                f"group is one pattern, so more would repeat patterns; ask for at most {n}"
            )
        seeds = np.arange(n) if n_groups is None else np.sort(_seed_positions(n, n_groups, rng))
        indices = seeds[:, None].astype(np.int64)
    else:
        if n < channels:
            raise ValueError(f"gridsize {gridsize} needs at least C = {channels} positions, the scan has {n}")
        k = k_neighbors if k_neighbors is not None else 2 * channels - 1
        if k < channels - 1:
            raise ValueError(f"k_neighbors = {k} must be >= C - 1 = {channels - 1}")
        k = min(k, n - 1)
        _, neighbours = cKDTree(positions).query(positions, k=k + 1)
        neighbours = neighbours[:, 1:]  # drop the position itself (distance 0, first)
        n_groups = n if n_groups is None else n_groups
        possible = n * math.comb(k, channels - 1)
        if n_groups > possible:
            raise ValueError(
                f"n_groups = {n_groups} exceeds the {possible} distinct groups that {n} positions allow "
                f"(gridsize {gridsize}, K = {k} neighbours); ask for at most {possible}"
            )
        seeds = _seed_positions(n, n_groups, rng)
        # draw C - 1 of the K neighbours without replacement, for all groups at once
        picks = np.argsort(rng.random((n_groups, k)), axis=1)[:, : channels - 1]
        partners = np.take_along_axis(neighbours[seeds], picks, axis=1)
        indices = np.concatenate([seeds[:, None], partners], axis=1).astype(np.int64)

    members = positions[indices]  # (G, C, 2)
    centroids = members.mean(axis=1)
    return Groups(indices=indices, offsets=members - centroids[:, None, :], centroids=centroids)


def split_positions(n_positions: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of pattern indices into (train, validation), each sorted.

    The validation set holds ``round(val_fraction * n)`` positions (at least one when the
    fraction is positive, and never all of them).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n_positions))
    if val_fraction > 0:
        n_val = min(max(n_val, 1), n_positions - 1)
    order = np.random.default_rng(seed).permutation(n_positions)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
