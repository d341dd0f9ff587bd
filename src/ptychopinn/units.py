"""Physical constants and unit conversions shared by :mod:`ptychopinn.io` and the simulator.

This module depends on nothing else in the package. All lengths are in metres, energies in
electronvolts unless a name says joules.
"""

from __future__ import annotations

PLANCK_CONSTANT_J_S = 6.62607015e-34
SPEED_OF_LIGHT_M_S = 299_792_458.0
ELECTRON_VOLT_J = 1.602176634e-19
#: h * c in eV * m: wavelength [m] = HC_EV_M / energy [eV].
HC_EV_M = PLANCK_CONSTANT_J_S * SPEED_OF_LIGHT_M_S / ELECTRON_VOLT_J


def energy_ev_to_wavelength_m(energy_ev: float) -> float:
    """Photon wavelength in metres for a photon energy in electronvolts."""
    if not energy_ev > 0:
        raise ValueError(f"photon energy must be positive, got {energy_ev!r} eV")
    return HC_EV_M / energy_ev


def wavelength_m_to_energy_ev(wavelength_m: float) -> float:
    """Photon energy in electronvolts for a wavelength in metres."""
    if not wavelength_m > 0:
        raise ValueError(f"wavelength must be positive, got {wavelength_m!r} m")
    return HC_EV_M / wavelength_m


def energy_ev_to_joules(energy_ev: float) -> float:
    """Convert electronvolts to joules (CXI stores photon energy in joules)."""
    return energy_ev * ELECTRON_VOLT_J


def energy_joules_to_ev(energy_j: float) -> float:
    """Convert joules to electronvolts."""
    return energy_j / ELECTRON_VOLT_J


def object_pixel_size_m(
    wavelength_m: float, detector_distance_m: float, n_pixels: int, detector_pixel_size_m: float
) -> float:
    """Real-space pixel size of the far-field geometry, ``dx = lambda * z / (N * p)``.

    Parameters
    ----------
    wavelength_m : float
        Photon wavelength (m).
    detector_distance_m : float
        Sample-to-detector distance z (m).
    n_pixels : int
        Detector (and patch) size N in pixels.
    detector_pixel_size_m : float
        Detector pixel pitch p (m).

    Returns
    -------
    float
        Object-plane pixel size dx (m).
    """
    for name, value in (
        ("wavelength_m", wavelength_m),
        ("detector_distance_m", detector_distance_m),
        ("n_pixels", n_pixels),
        ("detector_pixel_size_m", detector_pixel_size_m),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    return wavelength_m * detector_distance_m / (n_pixels * detector_pixel_size_m)
