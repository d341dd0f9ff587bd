"""Simulated ptychographic scans: object, probe, trajectory, forward model, Poisson noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..io import Scan, ScanMetadata
from ..options import Options, option
from ..physics import extract_patches
from ..physics.forward_models import FORWARD_MODELS, ForwardModel, Geometry, build_forward_model
from ..units import energy_ev_to_wavelength_m
from .objects import OBJECT_KINDS, make_object
from .probes import PROBE_KINDS, focused_probe, gaussian_probe, probe_from_file
from .scans import SCAN_KINDS, make_positions

#: Largest simulated detector (pixels per side) and object (bytes, complex64).
MAX_PATTERN_SIZE = 4096
MAX_OBJECT_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class SimulationConfig(Options):
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
    forward_model : str
        How the exit wave reaches the detector (:mod:`ptychopinn.physics.forward_models`:
        ``far_field``, ``near_field``), with its own ``forward_model_options`` (the near
        field's ``distance_m`` and ``focus_to_sample_m``); it also sets the object pixel.
    seed : int
        Fixes the object, the trajectory and the noise.
    batch_size : int
        Patterns simulated per vectorised block.
    """

    section = "simulation"
    pattern_size: int = option(
        64, "detector / patch size N in pixels, even", flags=("--patch-size", "-N"), minimum=2,
        group="scan",
    )  # fmt: skip
    n_positions: int = option(
        576, "number of scan positions", flags=("--n-positions", "--n-images"), minimum=1, group="scan"
    )
    object_kind: str = option(
        "natural", "object kind", flags=("--object",), choices=OBJECT_KINDS, group="scan"
    )
    probe: str = option(
        "focused", "'focused', 'gaussian', or a file (NPZ, CXI, .npy) holding an N x N probe",
        flags=("--probe",), metavar="PROBE", group="scan",
    )  # fmt: skip
    scan_kind: str = option("raster", "trajectory", flags=("--scan",), choices=SCAN_KINDS, group="scan")
    step_px: float = option(
        8.0, "mean step between positions, object pixels", flags=("--step",), minimum=0.0,
        exclusive_minimum=True, group="scan",
    )  # fmt: skip
    jitter_px: float = option(0.5, "raster jitter, pixels", flags=("--jitter",), minimum=0.0, group="scan")
    photons_per_pattern: float = option(
        1e6, "mean photons per pattern", flags=("--photons", "--nphotons"), minimum=0.0,
        exclusive_minimum=True, group="scan",
    )  # fmt: skip
    noise: bool = option(
        True, "Poisson counts; --no-noise writes expected intensities instead", flags=("--noise",),
        group="scan",
    )  # fmt: skip
    beamstop_radius_px: float = option(
        0.0, "central beamstop radius, detector pixels", flags=("--beamstop-radius",), minimum=0.0,
        default_text="none", group="scan",
    )  # fmt: skip
    phase_range: float = option(
        math.pi, "object phase span in rad", flags=("--phase-range",), minimum=0.0,
        default_text=f"pi = {math.pi:.4f}", group="scan",
    )  # fmt: skip
    amplitude_min: float = option(
        0.5, "lowest object amplitude, 0..1", flags=("--amplitude-min",), minimum=0.0, group="scan"
    )
    energy_ev: float = option(
        8800.0, "photon energy, eV", flags=("--energy-ev",), minimum=0.0, exclusive_minimum=True,
        group="geometry (SI)",
    )  # fmt: skip
    detector_distance_m: float = option(
        2.0, "detector distance, m", flags=("--distance",), minimum=0.0, exclusive_minimum=True,
        group="geometry (SI)",
    )  # fmt: skip
    detector_pixel_size_m: float = option(
        75e-6, "detector pixel pitch, m", flags=("--detector-pixel-size",), minimum=0.0,
        exclusive_minimum=True, group="geometry (SI)",
    )  # fmt: skip
    aperture_fraction: float = option(0.5, "focused probe: pupil radius, fraction of Nyquist", minimum=0.0,
                                      exclusive_minimum=True)  # fmt: skip
    probe_diameter_fraction: float = option(
        1 / 3, "focused probe: defocused spot size, fraction of N", minimum=0.0, exclusive_minimum=True
    )
    margin_px: int = option(2, "object pixels beyond the outermost patches", minimum=0)
    include_patches: bool = option(
        False, "also store the ground-truth patch of every position (Y)", flags=("--include-patches",),
        group="scan",
    )  # fmt: skip
    forward_model: str = option(
        "far_field", "how the exit wave reaches the detector", flags=("--forward-model",),
        choices=FORWARD_MODELS, group="geometry (SI)",
    )  # fmt: skip
    forward_model_options: dict[str, Any] = option(
        help="the forward model's own options", flags=("--forward-model",), plugins=FORWARD_MODELS,
        group="geometry (SI)",
    )  # fmt: skip
    seed: int = option(0, "fixes object, scan and noise", flags=("--seed",), minimum=0)
    batch_size: int = option(1024, "patterns simulated per vectorised block", minimum=1)

    def check(self) -> None:
        self.forward_settings()  # the forward model takes these options
        if self.pattern_size % 2:
            self.fail("pattern_size", "must be even")
        if self.pattern_size > MAX_PATTERN_SIZE:
            gib = self.pattern_size**2 * 8 / 1024**3
            self.fail(
                "pattern_size",
                f"larger than the {MAX_PATTERN_SIZE}-pixel detectors the simulator makes (one complex "
                f"probe alone would need {gib:.1f} GiB)",
            )
        if self.beamstop_radius_px >= self.pattern_size / 2:
            self.fail("beamstop_radius_px", f"would cover the whole {self.pattern_size}-pixel detector")

    @property
    def wavelength_m(self) -> float:
        return energy_ev_to_wavelength_m(self.energy_ev)

    def forward_settings(self) -> Options:
        """The forward model's own options, from ``forward_model_options``."""
        return self.plugin_options("forward_model_options", self.forward_model)

    def forward(self) -> ForwardModel:
        """The forward model the patterns are simulated through, for this geometry."""
        geometry = Geometry(wavelength_m=self.wavelength_m, pixel_size_m=self.pixel_size_m)
        return build_forward_model(self.forward_model, self.forward_settings(), geometry)

    @property
    def pixel_size_m(self) -> float:
        """Object pixel (m): the far field's ``lambda z / (N p)``, the near field's ``p / M``."""
        return FORWARD_MODELS.get(self.forward_model).object_pixel_size_m(
            self.forward_settings(), self.wavelength_m, self.detector_distance_m, self.pattern_size,
            self.detector_pixel_size_m,
        )  # fmt: skip


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


#: Patterns per noise stream: pattern k's noise depends only on the seed and k // NOISE_BLOCK,
#: so counts are the same however (and in whatever order) they are requested.
NOISE_BLOCK = 1024


class SimulatedPatterns:
    """Photon counts of a simulated scan, computed block by block when asked for.

    A :class:`~ptychopinn.io.PatternSource`: memory stays bounded by one block however long
    the scan, so that ``write_cxi`` can stream a scan of any length to disk.

    Parameters
    ----------
    obj : numpy.ndarray
        complex64 object ``(H, W)``.
    probe : numpy.ndarray
        Calibrated complex64 probe ``(N, N)``.
    positions : numpy.ndarray
        ``(n, 2)`` positions.
    noise_seed : numpy.random.SeedSequence or None
        Poisson noise seed; None for expected intensities.
    mask : numpy.ndarray, optional
        Detector mask: counts are zero where it is False (a beamstop).
    batch_size : int
        Patterns per vectorised forward-model call.
    forward : ForwardModel, optional
        How the exit waves reach the detector (default: the far field).
    """

    def __init__(self, obj, probe, positions, noise_seed, mask=None, batch_size: int = 1024, forward=None):
        size = probe.shape[-1]
        self.shape = (len(positions), size, size)
        self.dtype = np.dtype(np.float32)
        self._obj = torch.from_numpy(obj)[None]
        self._probe = torch.from_numpy(probe)
        self._positions = torch.from_numpy(positions)
        self._noise_seed = noise_seed
        self._mask = mask
        self._batch_size = batch_size
        self._forward = forward if forward is not None else build_forward_model("far_field")
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def expected(self, start: int, stop: int) -> np.ndarray:
        """Expected counts ``(stop - start, N, N)`` float64 of patterns ``start .. stop - 1``."""
        size = self.shape[-1]
        out = np.empty((stop - start, size, size), dtype=np.float64)
        with torch.no_grad():
            for first in range(start, stop, self._batch_size):
                last = min(first + self._batch_size, stop)
                patches = extract_patches(self._obj, self._positions[None, first:last], size)[0]
                out[first - start : last - start] = self._forward.intensity(patches, self._probe).numpy()
        return out

    def _block(self, block: int) -> np.ndarray:
        if self._cached is not None and self._cached[0] == block:
            return self._cached[1]
        start = block * NOISE_BLOCK
        expected = self.expected(start, min(start + NOISE_BLOCK, self.shape[0]))
        if self._noise_seed is not None:
            seed = self._noise_seed
            child = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, block))
            counts = np.random.default_rng(child).poisson(expected).astype(np.float32)
        else:
            counts = expected.astype(np.float32)
        if self._mask is not None:
            counts[:, ~self._mask] = 0.0
        self._cached = (block, counts)
        return counts

    def __getitem__(self, index) -> np.ndarray:
        single = isinstance(index, (int, np.integer))
        wanted = np.arange(self.shape[0])[index]
        wanted = np.atleast_1d(wanted)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=np.float32)
        for block in np.unique(wanted // NOISE_BLOCK):
            rows = np.flatnonzero(wanted // NOISE_BLOCK == block)
            out[rows] = self._block(int(block))[wanted[rows] - block * NOISE_BLOCK]
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[:]
        return data if dtype is None else data.astype(dtype)


def simulate_scan(
    config: SimulationConfig | None = None, *, progress: bool | None = None, lazy: bool = False
) -> Scan:
    """Simulate a ptychographic scan with the package's forward model.

    Steps: draw the positions and place them on an object grid that holds every patch;
    draw the object; build the probe; compute expected intensities
    ``|fftshift(FFT(P O_k))|^2`` in vectorised blocks; scale the probe so the mean expected
    count per pattern equals ``photons_per_pattern`` exactly; draw Poisson counts (one noise
    stream per block of :data:`NOISE_BLOCK` patterns).

    Parameters
    ----------
    config : SimulationConfig, optional
        Default: ``SimulationConfig()``, the built-in example scan.
    progress : bool, optional
        Show a progress bar (default: only on a terminal and when there are several blocks).
    lazy : bool
        Return the counts as a :class:`SimulatedPatterns` source computed on request (bounded
        memory, for streaming very long scans to CXI) instead of an array. Same numbers.

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
    if shape[0] * shape[1] * 8 > MAX_OBJECT_BYTES:
        raise ValueError(
            f"the scan needs an object of {shape[0]} x {shape[1]} pixels "
            f"({shape[0] * shape[1] * 8 / 1024**3:.1f} GiB complex64), over the "
            f"{MAX_OBJECT_BYTES / 1024**3:.0f} GiB the simulator holds: fewer positions or a smaller step"
        )
    obj = make_object(
        config.object_kind,
        shape,
        np.random.default_rng(object_seed),
        phase_range=config.phase_range,
        amplitude_min=config.amplitude_min,
    )
    probe = make_probe(config)
    mask = beamstop_mask(size, config.beamstop_radius_px) if config.beamstop_radius_px > 0 else None

    # Calibrate: sum |P|^2 scaled so the mean expected total per pattern is the request.
    forward = config.forward()
    unit = SimulatedPatterns(obj, probe, positions, None, None, config.batch_size, forward)
    starts = range(0, config.n_positions, NOISE_BLOCK)
    show = progress if progress is not None else (None if len(starts) > 1 else False)
    total = 0.0
    for start in tqdm(starts, desc="calibrating", unit="block", disable=None if show is None else not show):
        total += unit.expected(start, min(start + NOISE_BLOCK, config.n_positions)).sum()
    scale = config.photons_per_pattern / (total / config.n_positions)
    probe = (probe * np.sqrt(scale)).astype(np.complex64)
    source = SimulatedPatterns(
        obj, probe, positions, noise_seed if config.noise else None, mask, config.batch_size, forward
    )
    if lazy:
        counts = source
    else:
        counts = np.empty(source.shape, dtype=np.float32)
        for start in tqdm(
            starts, desc="simulating", unit="block", disable=None if show is None else not show
        ):
            stop = min(start + NOISE_BLOCK, config.n_positions)
            counts[start:stop] = source[start:stop]

    patches_gt = None
    if config.include_patches:
        with torch.no_grad():
            patches_gt = extract_patches(
                torch.from_numpy(obj)[None], torch.from_numpy(positions)[None], size
            )[0]
        patches_gt = patches_gt.numpy()

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
