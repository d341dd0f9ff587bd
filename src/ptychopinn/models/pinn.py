"""The physics-informed network: a generator followed by the known physics.

x (normalised amplitudes) -> generator -> O_k -> overlap constraint (C > 1) -> O'_k
-> lambda_k = sum_m |F(P_m O'_k)|^2  (expected counts, compared with the measured I_k)

Generators declaring ``uses_offsets`` / ``uses_probe`` (see
:class:`~ptychopinn.models.generators.base.Generator`) also get the group offsets / the probe
(the ``region`` and ``unrolled`` generators place the patterns, or step through the physics).
"""

from __future__ import annotations

import torch
from torch import nn

from ..physics import disk_weight, enforce_overlap, probe_weight
from ..physics.forward_models import ForwardModel as Propagation
from ..physics.forward_models import build_forward_model
from .generators.base import Generator


class ForwardModel(nn.Module):
    """Probe illumination, overlap constraint and detection for groups of patches.

    Parameters
    ----------
    probe : torch.Tensor
        Complex probe ``(M, N, N)`` (or ``(N, N)``), calibrated in counts.
    trainable : bool
        Make the probe a parameter (probe refinement).
    overlap_window : {"probe", "disk"}
        Merge window: the probe intensity normalised to max 1, or a disk of radius N/4.
    detector : physics forward model, optional
        How the exit waves reach the detector
        (:class:`ptychopinn.physics.forward_models.ForwardModel`; default: the far field).
    """

    def __init__(
        self,
        probe: torch.Tensor,
        trainable: bool = False,
        overlap_window: str = "probe",
        detector: Propagation | None = None,
    ):
        super().__init__()
        self.detector = detector if detector is not None else build_forward_model("far_field")
        if probe.ndim == 2:
            probe = probe[None]
        # stored as real pairs so precision plugins and optimisers never see complex tensors
        probe_real = torch.view_as_real(probe.to(torch.complex64)).clone()
        if trainable:
            self.probe_real = nn.Parameter(probe_real)
        else:
            self.register_buffer("probe_real", probe_real)
        if overlap_window not in ("probe", "disk"):
            raise ValueError(f"overlap_window must be 'probe' or 'disk', got {overlap_window!r}")
        self.overlap_window = overlap_window

    @property
    def probe(self) -> torch.Tensor:
        """The probe as complex64 ``(M, N, N)``."""
        return torch.view_as_complex(self.probe_real.float().contiguous())

    def window(self) -> torch.Tensor:
        size = self.probe_real.shape[-2]
        if self.overlap_window == "disk":
            return disk_weight(size, size / 4, device=self.probe_real.device)
        return probe_weight(self.probe.detach())

    def consistent_patches(self, patches: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Apply the overlap constraint to ``(B, C, N, N)`` patches (identity for C = 1)."""
        if patches.shape[1] == 1:
            return patches
        return enforce_overlap(patches, offsets.to(torch.float64), self.window())

    def forward(self, patches: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Consistent patches and their expected counts, both ``(B, C, N, N)``."""
        with torch.autocast(device_type=patches.device.type, enabled=False):
            consistent = self.consistent_patches(patches.to(torch.complex64), offsets)
            return consistent, self.detector.intensity(consistent, self.probe)


class PtychoPINN(nn.Module):
    """Generator + forward model: ``forward(x, offsets) -> (patches, expected counts)``."""

    def __init__(self, generator: Generator | nn.Module, forward_model: ForwardModel):
        super().__init__()
        self.generator = generator
        self.forward_model = forward_model

    def _generate(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.generator, Generator):  # a plain network (a test double): amplitudes only
            return self.generator(x)
        return self.generator(*self.generator.forward_arguments(x, offsets, self.forward_model.probe))

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_model(self._generate(x, offsets), offsets)

    def predict_patches(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The consistent patches alone: inference needs no expected counts (no far-field FFTs)."""
        patches = self._generate(x, offsets)
        with torch.autocast(device_type=patches.device.type, enabled=False):
            return self.forward_model.consistent_patches(patches.to(torch.complex64), offsets)
