"""The generator contract: a base class declaring what a generator needs, and its registry.

A generator maps a group's C normalised diffraction amplitudes ``(B, C, N, N)`` to C complex
object patches ``(B, C, N, N)`` (complex64). Adding one is one new file in this folder::

    @register_generator("mine")
    class MyGenerator(Generator):
        def __init__(self, channels, size, width=16, depth=3, modes=12, amplitude_max=2.0): ...
        def forward(self, x): ...

The package imports every module of this folder, so the registry (and every command's
``--generator`` choices, the configuration's validation and ``tests/test_generators.py``)
picks it up with no other edit. The registry is :data:`ptychopinn.registry.GENERATORS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from torch import nn

from ...options import NoOptions, Options
from ...registry import GENERATORS

if TYPE_CHECKING:  # the configuration is read by attribute; no import at run time
    from ...config import ModelConfig

G = TypeVar("G", bound="type[Generator]")


class Generator(nn.Module):
    """Base class of every generator.

    Capabilities are class attributes, read by :class:`~ptychopinn.models.pinn.PtychoPINN`
    and the tests:

    - ``uses_offsets``: ``forward`` takes the ``(B, C, 2)`` group offsets (pixels) after the
      amplitudes;
    - ``uses_probe``: ``forward`` then takes the ``(M, N, N)`` probe modes;
    - ``gridsizes``: the gridsizes g it accepts (None: any);
    - ``size_multiple``: N must be a multiple of this (``depth`` pooling stages: ``2**depth``).

    Subclasses take ``channels`` (C) and ``size`` (N) and, as keywords, ``width``, ``depth``,
    ``modes`` and ``amplitude_max`` (:class:`~ptychopinn.config.ModelConfig`); a generator with
    options of its own overrides :meth:`from_config`.
    """

    name: ClassVar[str] = ""
    #: the generator's own options with their defaults (``model.generator_options``,
    #: ``--generator.NAME``), passed to it as keywords by :meth:`from_config`
    options: ClassVar[type[Options]] = NoOptions
    uses_offsets: ClassVar[bool] = False
    uses_probe: ClassVar[bool] = False
    gridsizes: ClassVar[tuple[int, ...] | None] = None

    @classmethod
    def size_multiple(cls, config: ModelConfig) -> int:
        """N must be a multiple of this for ``config`` (1: any even N)."""
        return 1

    @staticmethod
    def shared_options(config: ModelConfig) -> dict[str, Any]:
        """The ``model`` options every generator takes: width, depth, modes, amplitude_max."""
        return {
            "width": config.width,
            "depth": config.depth,
            "modes": config.modes,
            "amplitude_max": config.amplitude_max,
        }

    @classmethod
    def from_config(cls, config: ModelConfig, channels: int, size: int) -> Generator:
        """The generator for C = ``channels`` patterns of N = ``size`` pixels."""
        own = config.plugin_options("generator_options", cls.name).to_dict()
        return cls(channels=channels, size=size, **cls.shared_options(config), **own)

    def pretrained_target(self, source: nn.Module) -> nn.Module:
        """The part of this network that ``source``'s weights fit (default: all of it)."""
        return self

    def forward_arguments(self, x: Any, offsets: Any, probe: Any) -> tuple[Any, ...]:
        """The arguments of :meth:`forward`, chosen by the capabilities."""
        arguments = [x]
        if self.uses_offsets:
            arguments.append(offsets)
        if self.uses_probe:
            arguments.append(probe)
        return tuple(arguments)


def register_generator(name: str) -> Callable[[G], G]:
    """Class decorator: register a :class:`Generator` subclass under ``name`` (in :data:`GENERATORS`).

    Raises
    ------
    ValueError
        The name is taken by another class, or is not a lower-case identifier.
    TypeError
        The class is not a :class:`Generator`.
    """

    def register(cls: G) -> G:
        if not isinstance(cls, type) or not issubclass(cls, Generator):
            raise TypeError(f"generator '{name}': {cls!r} is not a subclass of Generator")
        return GENERATORS.register(name, cls)

    return register


def list_generators() -> tuple[str, ...]:
    """Names of the registered generators, sorted."""
    return GENERATORS.names()


def get_generator(name: str) -> type[Generator]:
    """The generator class registered as ``name``.

    Raises
    ------
    ValueError
        No generator has that name (the message lists the registered ones).
    """
    return GENERATORS.get(name)
