"""Near field (Fresnel): the detector sees the exit wave propagated over a distance.

``A psi = IFFT(FFT(psi) H)`` with the paraxial transfer function
``H(f) = exp(-i pi lambda z |f|^2)`` (:func:`~ptychopinn.physics.fresnel_transfer_function`):
unitary, the detector pixel the object pixel. For a beam diverging from a focus ``z1`` upstream
of the sample onto a detector ``z2`` downstream, the Fresnel scaling theorem makes it the
parallel-beam case over the effective distance ``z_eff = z1 z2 / (z1 + z2)`` with the
magnification ``M = (z1 + z2) / z1``: the object pixel is the detector pixel over ``M``
(stated by :meth:`NearField.describe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...options import Options, option
from ..propagation import fresnel_transfer_function
from .base import ForwardModel, register_forward_model


@dataclass(frozen=True)
class NearFieldOptions(Options):
    """Distances of a near-field (holographic) experiment."""

    section = "near_field"
    distance_m: float | None = option(
        None, "sample-to-detector distance, m", flags=("--distance-m",), minimum=0.0, exclusive_minimum=True
    )
    focus_to_sample_m: float | None = option(
        None, "focus-to-sample distance of a diverging beam, m (none: a parallel beam)",
        flags=("--focus-to-sample-m",), minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip

    def check(self) -> None:
        if self.distance_m is None:
            self.fail("distance_m", "must be given: the sample-to-detector distance (m)")

    @property
    def magnification(self) -> float:
        """``M = (z1 + z2) / z1`` (1 for a parallel beam)."""
        if self.focus_to_sample_m is None:
            return 1.0
        return (self.focus_to_sample_m + self.distance_m) / self.focus_to_sample_m

    @property
    def effective_distance_m(self) -> float:
        """``z_eff = z2 / M``: the parallel-beam distance equivalent by the Fresnel scaling theorem."""
        return self.distance_m / self.magnification


@register_forward_model("near_field")
class NearField(ForwardModel):
    """Fresnel propagation over the (effective) distance, in the object's pixels."""

    options = NearFieldOptions

    def _transfer(self, waves: torch.Tensor) -> torch.Tensor:
        wavelength, pixel = self.geometry.require(self.name)
        cached = getattr(self, "_cached", None)
        key = (tuple(waves.shape[-2:]), waves.device)
        if cached is None or cached[0] != key:
            transfer = fresnel_transfer_function(
                key[0], self.settings.effective_distance_m, wavelength, pixel, device=waves.device
            )
            self._cached = cached = (key, transfer)
        return cached[1].to(waves.dtype)

    def propagate(self, waves: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(waves, norm="ortho") * self._transfer(waves), norm="ortho")

    def adjoint(self, waves: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.fft2(waves, norm="ortho") * self._transfer(waves).conj()
        return torch.fft.ifft2(spectrum, norm="ortho")

    @classmethod
    def object_pixel_size_m(
        cls,
        settings: Options,
        wavelength_m: float,
        detector_distance_m: float,
        size: int,
        detector_pixel_m: float,
    ) -> float:
        """The detector pixel over the magnification (Fresnel scaling theorem)."""
        return detector_pixel_m / settings.magnification

    def describe(self) -> dict[str, Any]:
        settings = self.settings
        return {
            **super().describe(),
            "magnification": settings.magnification,
            "effective_distance_m": settings.effective_distance_m,
            "fresnel_number": self._fresnel_number(),
        }

    def _fresnel_number(self) -> float | None:
        """``F = dx^2 / (lambda z_eff)`` per pixel (small: far from the detector)."""
        wavelength, pixel = self.geometry.wavelength_m, self.geometry.pixel_size_m
        if wavelength is None or pixel is None:
            return None
        return pixel**2 / (wavelength * self.settings.effective_distance_m)
