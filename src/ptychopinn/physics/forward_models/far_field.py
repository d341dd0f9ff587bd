"""Far field (Fraunhofer): the detector sees the exit wave's Fourier transform.

``A psi = fftshift(FFT_ortho(psi))``: unitary, zero frequency at the centre pixel; the object
pixel is ``lambda z / (N p)`` (docs/conventions.md, "Forward model").
"""

from __future__ import annotations

import torch

from ..propagation import far_field, far_field_inverse
from .base import ForwardModel, register_forward_model


@register_forward_model("far_field")
class FarField(ForwardModel):
    """Far-field propagation; no options, no geometry needed."""

    def propagate(self, waves: torch.Tensor) -> torch.Tensor:
        return far_field(waves)

    def adjoint(self, waves: torch.Tensor) -> torch.Tensor:
        return far_field_inverse(waves)  # unitary: the adjoint is the inverse
