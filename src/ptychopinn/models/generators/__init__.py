"""Generators: networks from a group's C diffraction patterns to C complex object patches.

Every module of this folder is imported here, and each registers its generator with
:func:`~ptychopinn.models.generators.base.register_generator`: a new generator is one new file
(see :mod:`~ptychopinn.models.generators.base` for the contract). Chosen by name through
:func:`get_generator` / :func:`build_generator`; :data:`GENERATORS` is the registry
(:class:`ptychopinn.registry.Registry`).
"""

from __future__ import annotations

from ...registry import GENERATORS
from .base import Generator, get_generator, list_generators, register_generator

GENERATORS.discover()  # every module of this folder: each registers its generator

from .cnn import CNNGenerator  # noqa: E402 - the modules above are imported by now
from .fno import FNOGenerator  # noqa: E402
from .hybrid import HybridGenerator  # noqa: E402
from .region import RegionGenerator  # noqa: E402
from .unrolled import UnrolledGenerator  # noqa: E402


def build_generator(config, channels: int, size: int) -> Generator:
    """The generator named by ``config.generator`` for C = ``channels`` and N = ``size``.

    ``config`` is a :class:`~ptychopinn.config.ModelConfig`.

    Raises
    ------
    ValueError
        Unknown name, a gridsize the generator does not take, or an N it cannot divide.

    Examples
    --------
    >>> from ptychopinn.config import ModelConfig
    >>> net = build_generator(ModelConfig(generator="fno", width=4, depth=1, modes=4), 1, 32)
    >>> type(net).__name__, net.uses_offsets
    ('FNOGenerator', False)
    """
    cls = get_generator(config.generator)
    gridsize = round(channels**0.5)
    if cls.gridsizes is not None and gridsize not in cls.gridsizes:
        raise ValueError(
            f"generator '{cls.name}' takes gridsize {', '.join(map(str, cls.gridsizes))}, got {gridsize}"
        )
    multiple = cls.size_multiple(config)
    if size % multiple:
        raise ValueError(f"generator '{cls.name}': N = {size} must be divisible by {multiple}")
    return cls.from_config(config, channels, size)


__all__ = [
    "GENERATORS",
    "CNNGenerator",
    "FNOGenerator",
    "Generator",
    "HybridGenerator",
    "RegionGenerator",
    "UnrolledGenerator",
    "build_generator",
    "get_generator",
    "list_generators",
    "register_generator",
]
