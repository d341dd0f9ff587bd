"""The forward-model contract: a linear propagation from the exit wave to the detector, with
its adjoint, and the expected counts it gives.

A model maps exit waves ``psi = P_m O`` (``(..., N, N)``, complex) to detector-plane waves
``A psi`` and back with the adjoint ``A^H``; the expected counts are
``lambda = sum_m |A (P_m O)|^2`` (incoherent modes add in intensity). Adding one is one new
file in this folder::

    @register_forward_model("mine")
    class Mine(ForwardModel):
        options = MineOptions          # its own options (an Options subclass), if any
        def propagate(self, waves): ...
        def adjoint(self, waves): ...

``tests/test_forward_models.py`` runs over every registered model: the adjoint identity
``<A x, y> = <x, A^H y>``, power (Parseval) where the model is unitary, and a known object
recovered from its own data.

This module depends on nothing else in the package but the options and the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from ...options import NoOptions, Options
from ...registry import FORWARD_MODELS
from ..forward import exit_waves

F = TypeVar("F", bound="type[ForwardModel]")


@dataclass(frozen=True)
class Geometry:
    """What a forward model may need of the experiment.

    Attributes
    ----------
    wavelength_m : float or None
        Photon wavelength (m).
    pixel_size_m : float or None
        Object-plane pixel size (m).
    """

    wavelength_m: float | None = None
    pixel_size_m: float | None = None

    def require(self, model: str) -> tuple[float, float]:
        """``(wavelength_m, pixel_size_m)``, both known and > 0, or a clear error naming ``model``."""
        for name in ("wavelength_m", "pixel_size_m"):
            value = getattr(self, name)
            if value is None or not value > 0:
                raise ValueError(
                    f"forward model {model} needs the {name.removesuffix('_m').replace('_', ' ')} "
                    f"(m), which the scan does not give (got {value!r})"
                )
        return float(self.wavelength_m), float(self.pixel_size_m)


class ForwardModel:
    """Base class of every forward model: a linear operator ``A`` on ``(..., N, N)`` waves.

    Subclasses implement :meth:`propagate` and :meth:`adjoint`, may set :attr:`options` (their
    own options, with defaults) and override :meth:`describe` (what the outputs should state,
    e.g. an effective distance).

    Parameters
    ----------
    geometry : Geometry
    settings : Options
        An instance of the class's :attr:`options`.
    """

    name: ClassVar[str] = ""
    options: ClassVar[type[Options]] = NoOptions
    #: ``propagate`` preserves power (``sum |A psi|^2 == sum |psi|^2``)
    unitary: ClassVar[bool] = True

    def __init__(self, geometry: Geometry, settings: Options):
        self.geometry = geometry
        self.settings = settings

    def propagate(self, waves: torch.Tensor) -> torch.Tensor:
        """``A psi``: exit waves ``(..., N, N)`` to detector-plane waves, same shape."""
        raise NotImplementedError

    def adjoint(self, waves: torch.Tensor) -> torch.Tensor:
        """``A^H``: detector-plane waves back to the exit plane."""
        raise NotImplementedError

    def intensity(self, object_patches: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
        """Expected counts ``sum_m |A (P_m O)|^2`` of patches ``(..., N, N)`` under a probe."""
        detector = self.propagate(exit_waves(object_patches, probe))
        return (detector.real**2 + detector.imag**2).sum(dim=-3)

    def describe(self) -> dict[str, Any]:
        """What the model is, for the outputs: its name and options (and derived quantities)."""
        return {"name": self.name, **self.settings.to_dict()}

    @classmethod
    def object_pixel_size_m(
        cls,
        settings: Options,
        wavelength_m: float,
        detector_distance_m: float,
        size: int,
        detector_pixel_m: float,
    ) -> float:
        """The object-plane pixel (m) this model gives a detector of ``size`` pixels of
        ``detector_pixel_m`` at ``detector_distance_m`` (the far field: ``lambda z / (N p)``)."""
        return wavelength_m * detector_distance_m / (size * detector_pixel_m)


def register_forward_model(name: str) -> Callable[[F], F]:
    """Class decorator: register a :class:`ForwardModel` subclass under ``name``.

    Raises
    ------
    TypeError
        The class is not a :class:`ForwardModel`.
    ValueError
        The name is taken, or not a lower-case identifier.
    """

    def register(cls: F) -> F:
        if not isinstance(cls, type) or not issubclass(cls, ForwardModel):
            raise TypeError(f"forward model '{name}': {cls!r} is not a subclass of ForwardModel")
        return FORWARD_MODELS.register(name, cls)

    return register


def build_forward_model(name: str, settings: Options | dict | None = None, geometry: Geometry | None = None):
    """The forward model ``name`` with its options (an instance or a mapping) for ``geometry``.

    Examples
    --------
    >>> model = build_forward_model("far_field")
    >>> flat = torch.ones(8, 8, dtype=torch.complex64)
    >>> model.intensity(flat, flat).sum()  # Parseval: the probe's power
    tensor(64.)
    """
    cls = FORWARD_MODELS.get(name)
    if not isinstance(settings, Options):
        settings = cls.options.from_dict(settings or {}, source=f"forward model {name}")
    return cls(geometry or Geometry(), settings)
