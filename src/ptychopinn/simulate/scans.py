"""Scan trajectories: raster (with jitter), Fermat spiral and random positions.

Each returns ``(n, 2)`` float64 positions ``(y, x)`` in pixels, relative to an arbitrary
origin; :func:`ptychopinn.simulate.simulate_scan` places them on the object grid.
"""

from __future__ import annotations

import math

import numpy as np

SCAN_KINDS = ("raster", "spiral", "random")


def raster_positions(
    n_positions: int, step_px: float, rng: np.random.Generator, jitter_px: float = 0.0
) -> np.ndarray:
    """Row-by-row raster of ``n_positions`` points on a near-square grid, plus uniform jitter.

    The grid has ``ceil(sqrt(n))`` columns; jitter is drawn uniformly in
    ``[-jitter_px, jitter_px]`` on each axis (it breaks the raster grid pathology).
    """
    columns = math.ceil(math.sqrt(n_positions))
    k = np.arange(n_positions)
    grid = np.stack([k // columns, k % columns], axis=1).astype(np.float64) * step_px
    if jitter_px > 0:
        grid += rng.uniform(-jitter_px, jitter_px, size=grid.shape)
    return grid


def fermat_spiral_positions(n_positions: int, step_px: float) -> np.ndarray:
    """Fermat spiral ``r_k = c sqrt(k)``, ``theta_k = k * golden angle``; mean spacing ``step_px``.

    Each point occupies an area ``pi c^2``, so ``c = step_px / sqrt(pi)`` gives the requested
    mean spacing.
    """
    golden_angle = math.pi * (3 - math.sqrt(5))
    k = np.arange(n_positions, dtype=np.float64)
    radius = step_px / math.sqrt(math.pi) * np.sqrt(k)
    theta = k * golden_angle
    return np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)


def random_positions(n_positions: int, step_px: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform random positions in a square of side ``step_px * sqrt(n)`` (spacing ~ step)."""
    side = step_px * math.sqrt(n_positions)
    return rng.uniform(0, side, size=(n_positions, 2))


def make_positions(
    kind: str, n_positions: int, step_px: float, rng: np.random.Generator, jitter_px: float = 0.0
) -> np.ndarray:
    """Positions of a scan of the given kind (``raster``, ``spiral`` or ``random``)."""
    if n_positions < 1:
        raise ValueError(f"n_positions must be >= 1, got {n_positions}")
    if not step_px > 0:
        raise ValueError(f"step_px must be positive, got {step_px}")
    if kind == "raster":
        return raster_positions(n_positions, step_px, rng, jitter_px)
    if kind == "spiral":
        return fermat_spiral_positions(n_positions, step_px)
    if kind == "random":
        return random_positions(n_positions, step_px, rng)
    raise ValueError(f"unknown scan kind '{kind}'; choose from {', '.join(SCAN_KINDS)}")
