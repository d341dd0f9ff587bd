"""The ptychographic forward model and its data-fidelity losses (docs/conventions.md, "Forward model").

psi_k    = P * O_k                              (exit wave)
lambda_k = sum_m | fftshift(FFT_ortho(P_m O_k)) |^2   (expected photon counts)
"""

from __future__ import annotations

import torch

from .propagation import far_field


def as_probe_modes(probe: torch.Tensor) -> torch.Tensor:
    """Return the probe as a mode stack ``(M, N, N)``; a single ``(N, N)`` probe gets M = 1."""
    if probe.ndim == 2:
        return probe.unsqueeze(0)
    if probe.ndim == 3:
        return probe
    raise ValueError(f"probe must have shape (N, N) or (modes, N, N), got {tuple(probe.shape)}")


def exit_waves(object_patches: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """Exit waves ``psi = P_m * O_k`` for every patch and probe mode.

    Parameters
    ----------
    object_patches : torch.Tensor
        Complex object patches, shape ``(..., N, N)``.
    probe : torch.Tensor
        Complex probe ``(N, N)`` or incoherent modes ``(M, N, N)``, calibrated so that
        ``sum |P|^2`` is in photon counts.

    Returns
    -------
    torch.Tensor
        Exit waves, shape ``(..., M, N, N)``.
    """
    modes = as_probe_modes(probe)
    if object_patches.shape[-2:] != modes.shape[-2:]:
        raise ValueError(
            f"patch size {tuple(object_patches.shape[-2:])} does not match probe size "
            f"{tuple(modes.shape[-2:])}"
        )
    return object_patches.unsqueeze(-3) * modes


def diffraction_intensity(object_patches: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """Expected far-field intensities (photon counts) of object patches under a probe.

    Incoherent probe modes add in intensity: ``lambda = sum_m |F(P_m O)|^2``.

    Parameters
    ----------
    object_patches : torch.Tensor
        Complex object patches, shape ``(..., N, N)``.
    probe : torch.Tensor
        Complex probe ``(N, N)`` or ``(M, N, N)``.

    Returns
    -------
    torch.Tensor
        Real intensities in counts, shape ``(..., N, N)``, zero frequency at the centre pixel.
    """
    detector = far_field(exit_waves(object_patches, probe))
    return (detector.real**2 + detector.imag**2).sum(dim=-3)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def poisson_nll(
    predicted: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Poisson negative log-likelihood per pixel, averaged (docs/conventions.md, "Loss").

    ``L = mean(lambda - I * log(lambda + eps))``, dropping the data-only term ``log(I!)``.

    Parameters
    ----------
    predicted : torch.Tensor
        Expected counts ``lambda >= 0``, shape ``(..., N, N)``.
    measured : torch.Tensor
        Measured counts ``I >= 0``, same shape.
    mask : torch.Tensor, optional
        Boolean ``(N, N)`` (or broadcastable) detector mask, True where a pixel is valid;
        masked pixels do not contribute. The data themselves are never changed.
    eps : float
        Keeps the logarithm finite where ``lambda`` is zero.
    """
    return _masked_mean(predicted - measured * torch.log(predicted + eps), mask)


def poisson_deviance(
    predicted: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """The Poisson NLL minus its value at a perfect fit, per pixel, averaged.

    ``D = mean(lambda - I - I * log((lambda + eps) / (I + eps)))``: the same gradient as
    :func:`poisson_nll` (they differ by a term of the data alone), but >= 0 and exactly 0 at
    ``lambda = I``. Near convergence the NLL is a large number changing in its last float32
    digits; the deviance keeps its precision, so optimisers see (and stop on) real progress.
    """
    ratio = torch.log(predicted + eps) - torch.log(measured + eps)
    return _masked_mean(predicted - measured - measured * ratio, mask)


def amplitude_mae(
    predicted: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean absolute error of amplitudes, ``mean |sqrt(lambda) - sqrt(I)|``, in sqrt(counts)."""
    # clamp before sqrt: the gradient of sqrt at exactly zero is infinite.
    residual = torch.sqrt(predicted.clamp_min(1e-12)) - torch.sqrt(measured.clamp_min(0.0))
    return _masked_mean(residual.abs(), mask)
