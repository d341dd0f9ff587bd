"""Generators: networks from a group's C diffraction patterns to C complex object patches.

Chosen by name from :data:`GENERATORS`. Every generator takes ``(B, C, N, N)`` normalised
amplitudes (and, when it sets ``uses_offsets`` / ``uses_probe``, the ``(B, C, 2)`` group offsets /
the ``(M, N, N)`` probe) and returns
``(B, C, N, N)`` complex64 patches.
"""

from __future__ import annotations

from torch import nn

from ...config import GENERATOR_NAMES, ModelConfig
from .cnn import CNNGenerator
from .fno import FNOGenerator
from .hybrid import HybridGenerator
from .region import RegionGenerator
from .unrolled import UnrolledGenerator

GENERATORS: dict[str, type[nn.Module]] = {
    "cnn": CNNGenerator,
    "fno": FNOGenerator,
    "hybrid": HybridGenerator,
    "region": RegionGenerator,
    "unrolled": UnrolledGenerator,
}
assert tuple(GENERATORS) == GENERATOR_NAMES, "config.GENERATOR_NAMES must list the registry"


def build_generator(config: ModelConfig, channels: int, size: int) -> nn.Module:
    """The generator named by ``config.generator`` for C = ``channels`` and N = ``size``."""
    try:
        cls = GENERATORS[config.generator]
    except KeyError:
        raise ValueError(
            f"unknown generator '{config.generator}'; choose from {', '.join(GENERATORS)}"
        ) from None
    extra = {}
    if cls is UnrolledGenerator:
        extra = {"iterations": config.unroll_steps, "corrections": config.unroll_corrections}
    return cls(
        channels=channels,
        size=size,
        width=config.width,
        depth=config.depth,
        modes=config.modes,
        amplitude_max=config.amplitude_max,
        **extra,
    )


__all__ = [
    "GENERATORS",
    "CNNGenerator",
    "FNOGenerator",
    "HybridGenerator",
    "RegionGenerator",
    "UnrolledGenerator",
    "build_generator",
]
