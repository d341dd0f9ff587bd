"""Shared fixtures: small real scans, simulated with the package itself."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptychopinn.simulate import SimulationConfig, simulate_scan

#: A tiny network for one epoch on the CPU: command-line runs that test plumbing, not learning.
TINY_TRAIN = [
    "--width",
    "4",
    "--depth",
    "2",
    "--modes",
    "4",
    "--accelerator",
    "cpu",
    "--epochs",
    "1",
    "--no-progress",
]

SMALL = SimulationConfig(
    pattern_size=32,
    n_positions=49,
    step_px=5.0,
    object_kind="dead_leaves",
    photons_per_pattern=1e4,
    seed=3,
)


@pytest.fixture(scope="session")
def small_config() -> SimulationConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_scan():
    return simulate_scan(SMALL)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def write_ptychodus_folder(scan, folder):
    """``scan`` in ptychodus' layout: ``diffraction.h5`` and ``product.h5`` in ``folder``."""
    from ptychopinn.io.ptychodus import write_ptychodus_product

    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "diffraction.h5", "w") as handle:
        handle["indexes"] = np.arange(scan.n_patterns)
        patterns = handle.create_dataset("patterns", data=scan.get_patterns().astype(np.uint32))
        patterns.attrs["detector_pixel_width_m"] = scan.metadata.detector_pixel_size_m
        patterns.attrs["detector_pixel_height_m"] = scan.metadata.detector_pixel_size_m
        handle["bad_pixels"] = np.zeros((scan.pattern_size,) * 2, bool)
    write_ptychodus_product(
        folder / "product.h5", object=scan.object, probe=scan.probe_modes, positions=scan.positions,
        pixel_size_m=scan.pixel_size_m(), energy_ev=scan.metadata.energy_ev,
        detector_distance_m=scan.metadata.detector_distance_m,
    )  # fmt: skip
    return folder
