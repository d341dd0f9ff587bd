"""Synthetic scans for testing, benchmarking and training: objects, probes, trajectories.

Everything random is fixed by one seed (:attr:`SimulationConfig.seed`).
"""

from .objects import (
    OBJECT_KINDS,
    dead_leaves,
    gaussian_random_field,
    make_object,
    natural_image,
    random_lines,
)
from .probes import PROBE_KINDS, focused_probe, gaussian_probe, probe_from_file
from .scans import (
    SCAN_KINDS,
    fermat_spiral_positions,
    make_positions,
    random_positions,
    raster_positions,
)
from .simulator import (
    NOISE_BLOCK,
    SimulatedPatterns,
    SimulationConfig,
    beamstop_mask,
    make_probe,
    simulate_scan,
)

__all__ = [
    "NOISE_BLOCK",
    "SimulatedPatterns",
    "OBJECT_KINDS",
    "PROBE_KINDS",
    "SCAN_KINDS",
    "SimulationConfig",
    "beamstop_mask",
    "dead_leaves",
    "fermat_spiral_positions",
    "focused_probe",
    "gaussian_probe",
    "gaussian_random_field",
    "make_object",
    "make_positions",
    "make_probe",
    "natural_image",
    "probe_from_file",
    "random_lines",
    "random_positions",
    "raster_positions",
    "simulate_scan",
]
