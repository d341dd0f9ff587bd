"""The simulator: requested dose, reproducibility, and data that the forward model explains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ptychopinn.io import write_npz
from ptychopinn.physics import diffraction_intensity, extract_patches
from ptychopinn.simulate import (
    OBJECT_KINDS,
    SCAN_KINDS,
    SimulationConfig,
    focused_probe,
    gaussian_probe,
    make_object,
    make_positions,
    probe_from_file,
    simulate_scan,
)

TINY = SimulationConfig(pattern_size=16, n_positions=64, step_px=3.0, object_kind="grf")


@pytest.mark.parametrize("photons", [1e2, 1e4, 1e7])
def test_mean_counts_match_the_request_within_poisson_error(photons):
    scan = simulate_scan(TINY.replace(photons_per_pattern=photons, n_positions=100, seed=11))
    totals = scan.total_counts()
    # the mean of n independent Poisson totals with mean `photons` has variance photons / n
    assert abs(totals.mean() - photons) < 4 * math.sqrt(photons / scan.n_patterns)
    assert np.all(scan.diffraction == np.round(scan.diffraction))  # whole photon counts


def test_noise_free_data_are_the_forward_model_of_the_stored_truth():
    scan = simulate_scan(TINY.replace(noise=False, seed=2))
    patches = extract_patches(
        torch.from_numpy(scan.object)[None], torch.from_numpy(scan.positions)[None], 16
    )[0]
    expected = diffraction_intensity(patches, torch.from_numpy(scan.probe)).numpy()
    np.testing.assert_allclose(scan.diffraction, expected, rtol=1e-4, atol=1e-3)
    assert scan.total_counts().mean() == pytest.approx(TINY.photons_per_pattern, rel=1e-5)


def test_same_seed_same_scan_other_seed_other_scan():
    a, b = simulate_scan(TINY.replace(seed=4)), simulate_scan(TINY.replace(seed=4))
    c = simulate_scan(TINY.replace(seed=5))
    for field in ("diffraction", "positions", "object", "probe"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.diffraction, c.diffraction)
    assert not np.array_equal(a.object, c.object)


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_object_kinds_respect_amplitude_and_phase_ranges(kind):
    obj = make_object(kind, (64, 80), np.random.default_rng(0), phase_range=2.0, amplitude_min=0.3)
    assert obj.shape == (64, 80) and obj.dtype == np.complex64
    amp, phase = np.abs(obj), np.angle(obj)
    assert amp.min() >= 0.3 - 1e-6 and amp.max() <= 1 + 1e-6
    assert phase.min() >= -1.0 - 1e-6 and phase.max() <= 1.0 + 1e-6
    assert amp.std() > 0.02 and phase.std() > 0.05  # structure, not a flat object
    assert abs(np.corrcoef(amp.ravel(), phase.ravel())[0, 1]) < 0.9  # independent maps


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown object kind"):
        make_object("cats", (8, 8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown scan kind"):
        make_positions("zigzag", 4, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="pattern_size"):
        SimulationConfig(pattern_size=15)
    with pytest.raises(ValueError, match="photons_per_pattern"):
        SimulationConfig(photons_per_pattern=0)


@pytest.mark.parametrize("kind", SCAN_KINDS)
def test_scan_kinds_have_the_requested_count_and_spacing(kind):
    from scipy.spatial import cKDTree

    positions = make_positions(kind, 400, 6.0, np.random.default_rng(1), jitter_px=0.0)
    assert positions.shape == (400, 2)
    nearest = cKDTree(positions).query(positions, k=2)[0][:, 1]
    if kind == "raster":
        np.testing.assert_allclose(nearest, 6.0)
    elif kind == "spiral":
        assert 0.7 * 6.0 < np.median(nearest) < 1.3 * 6.0
    else:
        span = positions.max(axis=0) - positions.min(axis=0)
        assert np.all(span > 0.9 * 6.0 * 20) and np.all(span <= 6.0 * 20)


def test_every_patch_of_every_scan_kind_lies_inside_the_object():
    for kind in SCAN_KINDS:
        scan = simulate_scan(TINY.replace(scan_kind=kind, jitter_px=1.0))  # Scan validates this
        assert scan.positions.min() >= 8 and (scan.positions.max(axis=0) + 8 <= scan.object.shape).all()


def test_probes_are_centred_with_unit_power():
    for probe in (focused_probe(64, 1.4e-10, 6e-8), gaussian_probe(64, sigma_px=5)):
        intensity = np.abs(probe) ** 2
        assert intensity.sum() == pytest.approx(1.0, rel=1e-5)
        yy, xx = np.mgrid[:64, :64]
        assert (intensity * yy).sum() == pytest.approx(32, abs=0.5)
        assert (intensity * xx).sum() == pytest.approx(32, abs=0.5)
        assert intensity[:4].sum() + intensity[-4:].sum() < 0.02  # fits inside N


def test_focused_probe_diameter_follows_the_requested_fraction():
    def rms_radius(probe):
        intensity = np.abs(probe) ** 2
        yy, xx = np.mgrid[:128, :128] - 64
        return math.sqrt((intensity * (yy**2 + xx**2)).sum())

    small = rms_radius(focused_probe(128, 1.4e-10, 6e-8, diameter_fraction=0.2))
    large = rms_radius(focused_probe(128, 1.4e-10, 6e-8, diameter_fraction=0.4))
    assert 1.6 < large / small < 2.4


def test_probe_from_a_scan_file_is_used(small_scan, tmp_path):
    path = tmp_path / "probe_source.npz"
    write_npz(small_scan, path)
    probe = probe_from_file(path, 32)
    np.testing.assert_allclose(
        probe, small_scan.probe / np.linalg.norm(small_scan.probe), rtol=1e-5, atol=1e-7
    )
    scan = simulate_scan(SimulationConfig(pattern_size=32, n_positions=9, step_px=4, probe=str(path)))
    np.testing.assert_allclose(scan.probe / np.linalg.norm(scan.probe), probe, rtol=1e-4, atol=1e-6)
    np.save(tmp_path / "p.npy", probe[:16, :16])
    with pytest.raises(ValueError, match="expected N = 32"):
        probe_from_file(tmp_path / "p.npy", 32)


def test_beamstop_blocks_the_centre_and_is_masked():
    scan = simulate_scan(TINY.replace(beamstop_radius_px=2.5))
    assert not scan.mask[8, 8] and scan.mask[0, 0]
    assert np.all(scan.diffraction[:, ~scan.mask] == 0)
    assert scan.diffraction[:, scan.mask].sum() > 0


def test_lazy_simulation_gives_the_same_counts_in_any_order():
    config = TINY.replace(n_positions=2500, seed=9)  # three noise blocks
    full = simulate_scan(config)
    lazy = simulate_scan(config, lazy=True)
    assert lazy.is_lazy
    index = np.array([2400, 5, 1500, 5, 1023, 1024])
    np.testing.assert_array_equal(lazy.get_patterns(index), full.diffraction[index])
    np.testing.assert_array_equal(lazy.get_patterns(slice(1000, 1100)), full.diffraction[1000:1100])
    np.testing.assert_array_equal(lazy.get_patterns(7), full.diffraction[7])


def test_cxi_simulation_is_streamed_and_equals_the_in_memory_scan(tmp_path):
    from ptychopinn.io import read_scan
    from ptychopinn.workflows import simulate_to_file

    config = TINY.replace(n_positions=1500, seed=4)
    simulate_to_file(config, tmp_path / "scan.cxi", progress=False)
    np.testing.assert_array_equal(
        read_scan(tmp_path / "scan.cxi").get_patterns(), simulate_scan(config).diffraction
    )


def test_simulate_never_writes_over_its_own_probe_file(tmp_path, capsys):
    """Issue 26, item 0: ``simulate --output F --probe F`` replaced its own probe file."""
    from ptychopinn.cli.main import main

    probe_file = tmp_path / "probe.npz"
    assert main(["simulate", "-o", str(probe_file), "-N", "16", "--n-positions", "9", "--step", "3"]) == 0
    before = probe_file.read_bytes()
    capsys.readouterr()
    for flag in ("-o", "--stream-to"):
        code = main(["simulate", flag, str(probe_file), "--probe", str(probe_file), "-N", "16",
                     "--n-positions", "9", "--step", "3"])  # fmt: skip
        assert code == 2 and "the output is the probe file" in capsys.readouterr().err
        assert probe_file.read_bytes() == before
