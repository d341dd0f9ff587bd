"""The refinement problem: what is optimised, the forward model, and the noise models.

    lambda_k = sum_m |F(P_m * Extract(O, r_k + dr_k))|^2 + b           (expected counts)
    minimise over O, P, dr, b:  sum_k L(lambda_k, I_k)  [+ tv * TV(O)]

Every solver (:mod:`ptychopinn.refine.solvers`) works on a :class:`RefinementProblem`: it
asks for a minibatch's loss (and autograd gives the gradients, through the same bilinear
extraction and orthonormal far field as training and inference) and applies the probe
constraints after its probe updates.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..physics import (
    add_probe_modes,
    amplitude_mae,
    apply_probe_support,
    extract_patches,
    orthogonalize_modes,
    poisson_deviance,
    probe_weight,
    scatter_patches,
)
from ..physics.forward_models import ForwardModel, build_forward_model
from .options import RefinementConfig


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean isotropic total variation of a complex image (smoothed at zero)."""
    dy = image[1:, :-1] - image[:-1, :-1]
    dx = image[:-1, 1:] - image[:-1, :-1]
    return torch.sqrt(dy.abs() ** 2 + dx.abs() ** 2 + 1e-12).mean()


def gaussian_amplitude_loss(
    predicted: torch.Tensor, measured_amplitude: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``sum 0.5 (sqrt(lambda) - sqrt(I))^2`` over valid pixels (a sum, not a mean).

    Its Wirtinger gradient with respect to an exit wave is ``(psi - psi') / 2`` (torch
    returns twice that, ``psi - psi'``), where ``psi'`` carries the measured modulus: the
    PIE/error-reduction residual, which is what the preconditioned solver divides by the
    illumination.
    """
    residual = torch.sqrt(predicted + 1e-9) - measured_amplitude
    squared = residual**2
    if mask is not None:
        squared = squared * mask
    return 0.5 * squared.sum()


def illumination_map(positions: torch.Tensor, probe: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Sum over positions of the probe intensity normalised to max 1, on the object grid."""
    weight = probe_weight(probe.detach()).to(positions.device)
    stack = weight.expand(positions.shape[0], *weight.shape).contiguous()
    return scatter_patches(stack[None], positions[None], shape)[0]


class RefinementProblem(torch.nn.Module):
    """Data, parameters and forward model of one refinement.

    Parameters
    ----------
    counts : torch.Tensor
        ``(n, N, N)`` measured counts, float32, on the working device.
    positions : torch.Tensor
        ``(n, 2)`` float64 ``(y, x)`` object pixels.
    probe : torch.Tensor
        Complex ``(M, N, N)``, already calibrated and grown to its modes.
    initial_object : torch.Tensor
        Complex ``(H, W)``.
    mask : torch.Tensor or None
        Boolean ``(N, N)``, True where valid.
    config : RefinementConfig
        Resolved options (no ``None`` left for solver-decided fields).
    forward : ForwardModel, optional
        How the exit waves reach the detector (default: the far field).
    """

    def __init__(
        self,
        counts: torch.Tensor,
        positions: torch.Tensor,
        probe: torch.Tensor,
        initial_object: torch.Tensor,
        mask: torch.Tensor | None,
        config: RefinementConfig,
        forward: ForwardModel | None = None,
    ):
        super().__init__()
        self.config = config
        self.forward_model = forward if forward is not None else build_forward_model("far_field")
        self.counts = counts
        self.amplitudes = counts.clamp_min(0).sqrt()
        self.positions = positions
        self.mask = mask
        self.mask_float = None if mask is None else mask.to(counts.dtype)
        self.size = counts.shape[-1]
        self.n = counts.shape[0]
        self.probe_power = float((probe.abs() ** 2).sum())
        self.parameterization = config.parameterization
        if config.parameterization == "complex":
            self.object_real = torch.nn.Parameter(torch.view_as_real(initial_object.clone()).contiguous())
        else:
            self.amplitude = torch.nn.Parameter(initial_object.abs().float().clone())
            self.phase = torch.nn.Parameter(initial_object.angle().float().clone())
        self.probe_real = torch.nn.Parameter(
            torch.view_as_real(probe.clone()).contiguous(), requires_grad=config.refine_probe
        )
        self.shifts = torch.nn.Parameter(
            torch.zeros(self.n, 2, dtype=torch.float64, device=positions.device),
            requires_grad=config.correct_positions,
        )
        # the background is optimised in units of the mean counts per pixel: gradient methods
        # (L-BFGS above all) see it on the scale of the other parameters
        self.background_unit = max(float(counts.mean()), 1e-3)
        self.background = torch.nn.Parameter(
            torch.zeros(self.size, self.size, device=counts.device), requires_grad=config.refine_background
        )
        self.bound = config.max_position_shift_px

    # -- the quantities ------------------------------------------------------------------
    def object_parameters(self) -> list[torch.nn.Parameter]:
        if self.parameterization == "complex":
            return [self.object_real]
        return [self.amplitude, self.phase]

    def object(self) -> torch.Tensor:
        if self.parameterization == "complex":
            return torch.view_as_complex(self.object_real)
        return torch.polar(self.amplitude, self.phase)

    def probe(self) -> torch.Tensor:
        return torch.view_as_complex(self.probe_real)

    def position_shifts(self) -> torch.Tensor:
        bounded = self.bound * torch.tanh(self.shifts / self.bound)
        return bounded - bounded.mean(dim=0)

    def corrected_positions(self, index: torch.Tensor | None = None) -> torch.Tensor:
        shifts = self.position_shifts()
        if index is None:
            return self.positions + shifts
        return self.positions[index] + shifts[index]

    def set_epoch(self, epoch: int) -> None:
        """Switch the probe and position parameters on at their start epochs."""
        config = self.config
        self.probe_real.requires_grad_(config.refine_probe and epoch >= config.probe_start_epoch)
        self.shifts.requires_grad_(config.correct_positions and epoch >= config.positions_start_epoch)
        # the background waits for the probe: early misfit is the object's, not the detector's
        self.background.requires_grad_(config.refine_background and epoch >= config.probe_start_epoch)

    # -- the forward model ---------------------------------------------------------------
    def forward_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Object patches ``(b, N, N)`` and expected counts ``(b, N, N)`` for some positions."""
        where = self.corrected_positions(index)
        patches = extract_patches(self.object()[None], where[None], self.size)[0]
        predicted = self.forward_model.intensity(patches, self.probe())
        if self.config.refine_background:
            predicted = predicted + self.background_counts()
        return patches, predicted

    def background_counts(self) -> torch.Tensor:
        """The additive background per detector pixel, in counts (>= 0)."""
        return self.background.clamp_min(0) * self.background_unit

    def loss(self, index: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """Mean loss per valid pixel of the configured noise model (plus the TV prior)."""
        measured = self.counts[index]
        if self.config.loss == "poisson":
            value = poisson_deviance(predicted, measured, self.mask)
        elif self.config.loss == "amplitude_mae":
            value = amplitude_mae(predicted, measured, self.mask)
        else:
            value = gaussian_amplitude_loss(predicted, self.amplitudes[index], self.mask_float)
            value = value / (len(index) * self.valid_pixels())
        if self.config.tv_weight > 0:
            value = value + self.config.tv_weight * total_variation(self.object())
        return value

    def batch_loss(self, index: torch.Tensor) -> torch.Tensor:
        return self.loss(index, self.forward_batch(index)[1])

    def valid_pixels(self) -> float:
        return float(self.size**2 if self.mask is None else self.mask.sum())

    # -- constraints ---------------------------------------------------------------------
    @torch.no_grad()
    def constrain_probe(self) -> None:
        """Orthogonal modes, optional support, power held to the calibrated value."""
        probe = orthogonalize_modes(self.probe())
        if self.config.probe_support_radius_px is not None:
            probe = apply_probe_support(probe, self.config.probe_support_radius_px)
        if self.config.hold_probe_power:
            power = float((probe.abs() ** 2).sum())
            if power > 0:
                probe = probe * math.sqrt(self.probe_power / power)
        self.probe_real.copy_(torch.view_as_real(probe.to(torch.complex64)))

    # -- results -------------------------------------------------------------------------
    @torch.no_grad()
    def illumination(self) -> torch.Tensor:
        return illumination_map(self.corrected_positions(), self.probe(), tuple(self.object().shape))

    def snapshot(self) -> np.ndarray:
        return self.object().detach().cpu().numpy().astype(np.complex64)


def start_probe(
    probe: torch.Tensor,
    config: RefinementConfig,
) -> torch.Tensor:
    """The probe grown to ``config.probe_modes`` orthogonal modes (when asked for)."""
    if config.probe_modes is not None and config.probe_modes > probe.shape[0]:
        probe = add_probe_modes(orthogonalize_modes(probe), config.probe_modes, config.new_mode_power)
    if config.probe_support_radius_px is not None:
        probe = apply_probe_support(probe, config.probe_support_radius_px)
    return probe.to(torch.complex64)


@torch.no_grad()
def calibration_factor(
    counts: torch.Tensor,
    positions: torch.Tensor,
    probe: torch.Tensor,
    obj: torch.Tensor,
    mask: torch.Tensor | None,
    forward: ForwardModel | None = None,
    sample: int = 64,
) -> float:
    """Amplitude factor for the probe so the starting object predicts the measured counts.

    ``f^2 = sum_valid I / sum_valid lambda`` over up to ``sample`` evenly spread positions,
    with ``lambda`` the forward model of ``obj`` (for a flat unit object, without a mask,
    ``sqrt(<sum I> / sum |P|^2)`` by Parseval).
    """
    n = counts.shape[0]
    index = torch.linspace(0, n - 1, min(n, sample), device=counts.device).round().long().unique()
    patches = extract_patches(obj[None], positions[index][None], counts.shape[-1])[0]
    forward = forward if forward is not None else build_forward_model("far_field")
    predicted = forward.intensity(patches, probe).double()
    measured = counts[index].double()
    if mask is not None:
        predicted, measured = predicted * mask, measured * mask
    expected, observed = float(predicted.sum()), float(measured.sum())
    if expected <= 0 or observed <= 0:
        return 1.0
    return math.sqrt(observed / expected)
