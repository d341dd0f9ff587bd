"""Batches of a few fixed sizes for a network that meets batches of every size (live frames).

On a GPU each new batch shape costs its FFT plans and kernel choices the first time it is met
(a cold start stalled a live reconstruction at 2,000 frames/s, docs/benchmarks.md). Padding a
batch of ``n`` frames up to the next power of two bounds the shapes to ``log2(largest)`` of
them, each prepared once before the first frame.
"""

from __future__ import annotations

import torch


def bucket_sizes(largest: int) -> list[int]:
    """The batch sizes used: powers of two up to ``largest`` (and ``largest`` itself).

    Examples
    --------
    >>> bucket_sizes(100)
    [1, 2, 4, 8, 16, 32, 64, 100]
    """
    sizes, size = [], 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return sizes + [largest]


def padded(x: torch.Tensor, largest: int) -> torch.Tensor:
    """``x`` ``(n, ...)`` with zero frames appended up to its bucket (``n <= largest``)."""
    n = x.shape[0]
    bucket = next(size for size in bucket_sizes(largest) if size >= n)
    if bucket == n:
        return x
    return torch.cat([x, x.new_zeros((bucket - n, *x.shape[1:]))])
