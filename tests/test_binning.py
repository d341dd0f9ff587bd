"""Detector binning (issue 17): counts preserved, the physics kept, the outputs stated."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN
from ptychopinn.cli.main import main
from ptychopinn.data.binning import bin_patterns, bin_scan
from ptychopinn.io import read_scan, write_scan
from ptychopinn.physics import diffraction_intensity, extract_patches
from ptychopinn.simulate import SimulationConfig, simulate_scan


@pytest.fixture(scope="module")
def scan():
    # a gaussian probe, narrow enough to fit half the window: binning by 2 stays physical
    return simulate_scan(SimulationConfig(pattern_size=32, n_positions=36, step_px=3.0, probe="gaussian",
                                          photons_per_pattern=1e5, seed=9))  # fmt: skip


def test_binning_preserves_every_patterns_total_counts(scan):
    binned = bin_scan(scan, 2)
    assert binned.pattern_size == 16
    # shared out, never lost (but for half a pixel at the detector's last row and column)
    np.testing.assert_allclose(binned.total_counts(), scan.total_counts(), rtol=2e-3)
    np.testing.assert_array_equal(binned.positions, scan.positions)
    assert binned.pixel_size_m() == pytest.approx(scan.pixel_size_m())  # dx = lambda z / (N p): unchanged
    assert binned.metadata.detector_pixel_size_m == pytest.approx(2 * scan.metadata.detector_pixel_size_m)


def test_the_zero_frequency_stays_the_centre_pixel():
    pattern = np.zeros((1, 8, 8))
    pattern[0, 4, 4] = 7
    binned = bin_patterns(pattern, 2)[0]
    assert binned[2, 2] == 7 and binned.sum() == 7


def test_binned_patterns_follow_the_forward_model_with_the_cropped_probe(scan):
    """Noise-free: the binned far field of a probe inside the window ~ the model on the small grid."""
    obj = torch.from_numpy(scan.object)[None]
    positions = torch.from_numpy(scan.positions)[None]
    fine = diffraction_intensity(extract_patches(obj, positions, 32)[0], torch.from_numpy(scan.probe_modes))
    binned = bin_scan(scan.replace(diffraction=fine.numpy().astype(np.float32)), 2)
    model = diffraction_intensity(
        extract_patches(obj, positions, 16)[0], torch.from_numpy(binned.probe_modes)
    )
    model = model * (binned.total_counts().sum() / float(model.sum()))
    error = np.abs(model.numpy() - binned.get_patterns()).sum() / binned.get_patterns().sum()
    assert error < 0.16  # an approximation (module docstring): 0.139 here; a plain block sum gives 0.34


def test_masked_pixels_spoil_only_their_own_bin(scan):
    mask = np.ones((32, 32), bool)
    mask[3, 5] = False
    binned = bin_scan(scan.replace(mask=mask), 2)
    # fine pixel (3, 5) is gathered by the bins centred on fine rows 2, 4 and columns 4, 6
    assert (~binned.mask).sum() == 4 and not binned.mask[1:3, 2:4].any()
    assert binned.get_patterns()[:, 1:3, 2:4].max() == 0


def test_a_probe_too_wide_for_the_binned_window_is_reported():
    wide = simulate_scan(SimulationConfig(pattern_size=32, n_positions=9, step_px=6.0, seed=1))
    with pytest.warns(UserWarning, match="alias"):
        bin_scan(wide, 4)


def test_a_bad_factor_is_refused(scan):
    with pytest.raises(ValueError, match="must divide N/2"):
        bin_scan(scan, 3)


def test_train_bins_and_infer_bins_alike(scan, tmp_path, capsys):
    data = tmp_path / "scan.npz"
    write_scan(scan, data)
    run = tmp_path / "run"
    assert (
        main(["train", "--train-data", str(data), "--output-dir", str(run), "--bin", "2", *TINY_TRAIN]) == 0
    )
    summary = json.loads((run / "training_summary.json").read_text())
    assert any("binned by 2" in note for note in summary["notes"])
    out = tmp_path / "out"
    assert main(["infer", "--model", str(run / "model.zip"), "--data", str(data), "--output-dir", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    info = json.loads((out / "inference.json").read_text())
    assert info["detector_bin"] == 2
    with np.load(out / "reconstruction.npz") as result:
        assert result["object"].shape == read_scan(data).object.shape
