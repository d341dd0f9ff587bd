"""A spatial hold-out: a contiguous block of scan positions never seen in training.

A random split leaves held-out patterns surrounded by training patterns that share most of
their object area, so a network scored on them is scored on what it saw. Holding out one side
of the scan instead tests what a user needs: reconstructing object regions the network never
saw (``docs/benchmarks.md``, "The network on measured data").

The region is named ``SIDE:FRACTION``: ``right:0.25`` holds out the positions in the right
quarter of the scan's extent (x above ``x_min + 0.75 (x_max - x_min)``); sides ``left``,
``right``, ``top`` (small y) and ``bottom`` (large y).
"""

from __future__ import annotations

import numpy as np

SIDES = ("left", "right", "top", "bottom")


def parse_holdout_region(spec: str) -> tuple[str, float]:
    """``(side, fraction)`` from ``"SIDE:FRACTION"``.

    Raises
    ------
    ValueError
        Unknown side, or a fraction outside (0, 1).

    Examples
    --------
    >>> parse_holdout_region("right:0.25")
    ('right', 0.25)
    """
    side, _, fraction = str(spec).partition(":")
    side = side.strip().lower()
    if side not in SIDES:
        raise ValueError(
            f"holdout region {spec!r}: the side must be one of {', '.join(SIDES)} (e.g. right:0.25)"
        )
    try:
        value = float(fraction)
    except ValueError:
        raise ValueError(
            f"holdout region {spec!r}: the fraction after ':' must be a number (e.g. right:0.25)"
        ) from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"holdout region {spec!r}: the fraction must lie between 0 and 1, got {value}")
    return side, value


def holdout_mask(positions: np.ndarray, spec: str) -> np.ndarray:
    """Boolean ``(n,)``: True for the positions inside the held-out region ``spec``.

    Parameters
    ----------
    positions : numpy.ndarray
        ``(n, 2)`` ``(y, x)`` object pixels.
    spec : str
        ``"SIDE:FRACTION"`` (see the module docstring).

    Examples
    --------
    >>> xs = np.arange(8.0)
    >>> holdout_mask(np.stack([np.zeros(8), xs], axis=1), "right:0.25").nonzero()[0]
    array([6, 7])
    """
    side, fraction = parse_holdout_region(spec)
    positions = np.asarray(positions, dtype=np.float64)
    axis = 1 if side in ("left", "right") else 0
    coordinate = positions[:, axis]
    low, high = float(coordinate.min()), float(coordinate.max())
    if side in ("right", "bottom"):
        return coordinate > high - fraction * (high - low)
    return coordinate < low + fraction * (high - low)
