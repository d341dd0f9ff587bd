"""Simulated ptychographic scans: object, probe, trajectory, forward model, Poisson noise."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..io import Scan, ScanMetadata
from ..physics import diffraction_intensity, extract_patches
from ..units import energy_ev_to_wavelength_m, object_pixel_size_m
from .objects import OBJECT_KINDS, make_object
from .probes import PROBE_KINDS, focused_probe, gaussian_probe, probe_from_file
from .scans import SCAN_KINDS, make_positions


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated scan; the defaults give the built-in example.

    Attributes
    ----------
    pattern_size : int
        N, detector and patch side in pixels (even).
    n_positions : int
        Number of scan positions (patterns).
    object_kind : str
        ``lines``, ``grf``, ``dead_leaves`` or ``natural`` (see :mod:`.objects`).
    probe : str
        ``focused``, ``gaussian``, or a path to a file holding a probe of size N.
    scan_kind : str
        ``raster``, ``spiral`` or ``random``.
    step_px : float
        Mean distance between neighbouring positions (object pixels).
    jitter_px : float
        Uniform jitter added to raster positions (pixels).
    photons_per_pattern : float
        Mean expected photon count per pattern; the probe is calibrated to give exactly this.
    noise : bool
        Draw Poisson counts (True) or keep the expected intensities (False).
    beamstop_radius_px : float
        Radius of a central beamstop (detector pixels); 0 for none. Blocked pixels read zero
        counts and are False in the scan's detector mask.
    phase_range, amplitude_min : float
        Object phase span (rad) and lowest amplitude.
    energy_ev, detector_distance_m, detector_pixel_size_m : float
        Geometry; they fix the object pixel size ``lambda z / (N p)``.
    aperture_fraction, probe_diameter_fraction : float
        Focused probe: pupil radius (fraction of Nyquist) and defocused spot size (fraction of N).
    margin_px : int
        Object pixels beyond the outermost patches.
    include_patches : bool
        Also store the ground-truth object patch of every position (``Y`` in NPZ files).
    seed : int
        Fixes the object, the trajectory and the noise.
    batch_size : int
        Patterns simulated per vectorised block.
    """

    pattern_size: int = 64
    n_positions: int = 576
    object_kind: str = "natural"
    probe: str = "focused"
    scan_kind: str = "raster"
    step_px: float = 8.0
    jitter_px: float = 0.5
    photons_per_pattern: float = 1e6
    noise: bool = True
    beamstop_radius_px: float = 0.0
    phase_range: float = math.pi
    amplitude_min: float = 0.5
    energy_ev: float = 8800.0
    detector_distance_m: float = 2.0
    detector_pixel_size_m: float = 75e-6
    aperture_fraction: float = 0.5
    probe_diameter_fraction: float = 1 / 3
    margin_px: int = 2
    include_patches: bool = False
    seed: int = 0
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.pattern_size < 2 or self.pattern_size % 2:
            raise ValueError(f"pattern_size must be even and >= 2, got {self.pattern_size}")
        if self.n_positions < 1:
            raise ValueError(f"n_positions must be >= 1, got {self.n_positions}")
        if self.object_kind not in OBJECT_KINDS:
            raise ValueError(
                f"object_kind must be one of {', '.join(OBJECT_KINDS)}, got '{self.object_kind}'"
            )
        if self.scan_kind not in SCAN_KINDS:
            raise ValueError(f"scan_kind must be one of {', '.join(SCAN_KINDS)}, got '{self.scan_kind}'")
        positive = (
            "step_px",
            "photons_per_pattern",
            "energy_ev",
            "detector_distance_m",
            "detector_pixel_size_m",
            "batch_size",
        )
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        for name in ("jitter_px", "beamstop_radius_px", "margin_px"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.beamstop_radius_px >= self.pattern_size / 2:
            raise ValueError(
                f"beamstop_radius_px {self.beamstop_radius_px} would cover the whole "
                f"{self.pattern_size}-pixel detector"
            )

    def replace(self, **changes) -> SimulationConfig:
        return dataclasses.replace(self, **changes)

    @property
    def wavelength_m(self) -> float:
        return energy_ev_to_wavelength_m(self.energy_ev)

    @property
    def pixel_size_m(self) -> float:
        return object_pixel_size_m(
            self.wavelength_m,
            self.detector_distance_m,
            self.pattern_size,
            self.detector_pixel_size_m,
        )


def make_probe(config: SimulationConfig) -> np.ndarray:
    """The configured probe at unit power, complex64 ``(N, N)``."""
    if config.probe == "focused":
        return focused_probe(
            config.pattern_size,
            config.wavelength_m,
            config.pixel_size_m,
            aperture_fraction=config.aperture_fraction,
            diameter_fraction=config.probe_diameter_fraction,
        )
    if config.probe == "gaussian":
        return gaussian_probe(config.pattern_size)
    if config.probe in PROBE_KINDS:  # pragma: no cover - guarded by PROBE_KINDS above
        raise AssertionError(config.probe)
    return probe_from_file(config.probe, config.pattern_size)


def beamstop_mask(size: int, radius_px: float) -> np.ndarray:
    """Detector mask, True where valid: False inside a central disk of ``radius_px``."""
    coords = np.arange(size) - size // 2
    return np.hypot(coords[:, None], coords[None, :]) > radius_px


def simulate_scan(config: SimulationConfig | None = None, *, progress: bool | None = None) -> Scan:
    """Simulate a ptychographic scan with the package's forward model.

    Steps: draw the positions and place them on an object grid that holds every patch;
    draw the object; build the probe; compute expected intensities
    ``|fftshift(FFT(P O_k))|^2`` in vectorised blocks; scale the probe so the mean expected
    count per pattern equals ``photons_per_pattern`` exactly; draw Poisson counts.

    Parameters
    ----------
    config : SimulationConfig, optional
        Default: ``SimulationConfig()``, the built-in example scan.
    progress : bool, optional
        Show a progress bar (default: only on a terminal and when there are several blocks).

    Returns
    -------
    Scan
        Counts, positions, the calibrated probe, the ground-truth object and metadata.
    """
    config = config if config is not None else SimulationConfig()
    object_seed, scan_seed, noise_seed = np.random.SeedSequence(config.seed).spawn(3)
    size = config.pattern_size
    half = size // 2

    relative = make_positions(
        config.scan_kind,
        config.n_positions,
        config.step_px,
        np.random.default_rng(scan_seed),
        config.jitter_px,
    )
    positions = relative - relative.min(axis=0) + half + config.margin_px
    shape = tuple(int(math.ceil(v)) + half + config.margin_px + 1 for v in positions.max(axis=0))
    obj = make_object(
        config.object_kind,
        shape,
        np.random.default_rng(object_seed),
        phase_range=config.phase_range,
        amplitude_min=config.amplitude_min,
    )
    probe = make_probe(config)

    obj_t = torch.from_numpy(obj)[None]
    probe_t = torch.from_numpy(probe)
    pos_t = torch.from_numpy(positions)[None]
    expected = np.empty((config.n_positions, size, size), dtype=np.float64)
    starts = range(0, config.n_positions, config.batch_size)
    show = progress if progress is not None else (None if len(starts) > 1 else False)
    with torch.no_grad():
        for start in tqdm(
            starts, desc="simulating", unit="block", disable=None if show is None else not show
        ):
            stop = min(start + config.batch_size, config.n_positions)
            patches = extract_patches(obj_t, pos_t[:, start:stop], size)[0]
            expected[start:stop] = diffraction_intensity(patches, probe_t).numpy()

    # Calibrate: sum |P|^2 scaled so the mean expected total per pattern is the request.
    scale = config.photons_per_pattern / expected.sum(axis=(1, 2)).mean()
    expected *= scale
    probe = (probe * np.sqrt(scale)).astype(np.complex64)

    if config.noise:
        counts = np.random.default_rng(noise_seed).poisson(expected).astype(np.float32)
    else:
        counts = expected.astype(np.float32)
    mask = None
    if config.beamstop_radius_px > 0:
        mask = beamstop_mask(size, config.beamstop_radius_px)
        counts[:, ~mask] = 0.0

    patches_gt = None
    if config.include_patches:
        with torch.no_grad():
            patches_gt = extract_patches(obj_t, pos_t, size)[0].numpy()

    metadata = ScanMetadata(
        energy_ev=config.energy_ev,
        detector_distance_m=config.detector_distance_m,
        detector_pixel_size_m=config.detector_pixel_size_m,
        object_pixel_size_m=config.pixel_size_m,
        photons_per_pattern=config.photons_per_pattern,
    )
    return Scan(
        diffraction=counts,
        positions=positions,
        probe=probe,
        object=obj,
        mask=mask,
        scan_index=np.zeros(config.n_positions, dtype=np.int64),
        patches=patches_gt,
        metadata=metadata,
        source="simulation",
    )
