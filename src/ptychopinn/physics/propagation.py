"""Wave propagation: far-field (Fraunhofer) and near-field (Fresnel) operators.

Conventions (docs/conventions.md): FFTs are orthonormal (``norm="ortho"``) so that Parseval holds,
``sum |F(psi)|^2 == sum |psi|^2``; in diffraction space the zero spatial frequency sits at the
centre pixel ``(N//2, N//2)``.
"""

from __future__ import annotations

import math

import torch

_SPATIAL_DIMS = (-2, -1)


def far_field(exit_wave: torch.Tensor) -> torch.Tensor:
    """Propagate exit waves to the far-field detector plane.

    ``Psi = fftshift(FFT_ortho(psi))`` over the last two axes.

    Parameters
    ----------
    exit_wave : torch.Tensor
        Complex exit waves, shape ``(..., N, N)``.

    Returns
    -------
    torch.Tensor
        Complex far-field amplitudes, same shape, zero frequency at ``(N//2, N//2)``.
    """
    return torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=_SPATIAL_DIMS)


def far_field_inverse(detector_wave: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`far_field`: back-propagate a centred detector-plane wave."""
    return torch.fft.ifft2(torch.fft.ifftshift(detector_wave, dim=_SPATIAL_DIMS), norm="ortho")


def fresnel_transfer_function(
    shape: tuple[int, int],
    distance_m: float,
    wavelength_m: float,
    pixel_size_m: float,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fresnel (paraxial) transfer function ``H(f) = exp(-i pi lambda z |f|^2)``.

    Laid out in unshifted FFT order, to multiply ``torch.fft.fft2`` output directly.

    Parameters
    ----------
    shape : (int, int)
        Field shape ``(H, W)`` in pixels.
    distance_m : float
        Propagation distance z (m); negative values propagate backwards.
    wavelength_m : float
        Wavelength (m).
    pixel_size_m : float
        Real-space pixel size (m).
    """
    fy = torch.fft.fftfreq(shape[0], d=pixel_size_m, dtype=torch.float64, device=device)
    fx = torch.fft.fftfreq(shape[1], d=pixel_size_m, dtype=torch.float64, device=device)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    return torch.exp(-1j * math.pi * wavelength_m * distance_m * f2).to(torch.complex64)


def fresnel_propagate(
    field: torch.Tensor, distance_m: float, wavelength_m: float, pixel_size_m: float
) -> torch.Tensor:
    """Propagate a complex field by ``distance_m`` with the Fresnel transfer function.

    The operator is unitary (it only changes phases in Fourier space), so the total power is
    conserved. Periodic boundaries: keep the field well inside the array.

    Parameters
    ----------
    field : torch.Tensor
        Complex field, shape ``(..., H, W)``.
    distance_m, wavelength_m, pixel_size_m : float
        Propagation distance, wavelength and pixel size, all in metres.
    """
    transfer = fresnel_transfer_function(
        tuple(field.shape[-2:]), distance_m, wavelength_m, pixel_size_m, device=field.device
    )
    spectrum = torch.fft.fft2(field, norm="ortho") * transfer.to(field.dtype)
    return torch.fft.ifft2(spectrum, norm="ortho")
