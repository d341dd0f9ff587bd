"""Shared fixtures: small real scans, simulated with the package itself."""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn.simulate import SimulationConfig, simulate_scan

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
