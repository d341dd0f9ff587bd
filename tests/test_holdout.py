"""A spatial hold-out (issue 17): a block of positions never seen in training, reconstructed apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_TRAIN
from ptychopinn.cli.main import main
from ptychopinn.config import DataConfig
from ptychopinn.data import holdout_mask, parse_holdout_region
from ptychopinn.io import write_scan
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows import load_run_config, train

TINY = {"width": 4, "depth": 2, "modes": 4}


@pytest.fixture(scope="module")
def scan():
    return simulate_scan(SimulationConfig(pattern_size=16, n_positions=64, step_px=3.0, seed=8))


@pytest.fixture(scope="module")
def scan_file(scan, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "scan.npz"
    write_scan(scan, path)
    return path


@pytest.mark.parametrize("side, axis, keep_high", [("right", 1, True), ("left", 1, False),
                                                   ("bottom", 0, True), ("top", 0, False)])  # fmt: skip
def test_the_region_is_one_contiguous_side_of_the_scan(scan, side, axis, keep_high):
    held = holdout_mask(scan.positions, f"{side}:0.3")
    coordinate = scan.positions[:, axis]
    assert 0 < held.sum() < len(held)
    if keep_high:
        assert coordinate[held].min() > coordinate[~held].max()
    else:
        assert coordinate[held].max() < coordinate[~held].min()


@pytest.mark.parametrize("spec", ["middle:0.2", "right:0", "right:1", "right:x", "right"])
def test_a_bad_region_is_refused_by_the_configuration(spec):
    with pytest.raises(ValueError, match="data.holdout_region"):
        DataConfig(holdout_region=spec)
    with pytest.raises(ValueError):
        parse_holdout_region(spec)


def test_no_held_out_position_reaches_training_or_validation(scan, scan_file, tmp_path):
    config = load_run_config(overrides={
        "data": {"train_data": str(scan_file), "gridsize": 2, "val_fraction": 0.2,
                 "holdout_region": "right:0.3"},
        "model": TINY, "training": {"epochs": 1},
        "execution": {"accelerator": "cpu", "logger": "none", "progress_bar": False, "batch_size": 8},
    })  # fmt: skip
    result = train(config, tmp_path / "run")
    held = np.flatnonzero(holdout_mask(scan.positions, "right:0.3"))
    for loader in (result.train_loader, result.val_loader):
        used = np.unique(loader.dataset.groups.indices)
        assert len(used) and not np.intersect1d(used, held).size
    assert any("holdout region right:0.3" in note for note in result.summary["notes"])


def test_infer_reconstructs_only_the_held_out_positions(scan, scan_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--train-data", str(scan_file), "--output-dir", str(run), "--holdout-region",
                 "left:0.25", *TINY_TRAIN]) == 0  # fmt: skip
    out = tmp_path / "held"
    assert main(["infer", "--model", str(run / "model.zip"), "--data", str(scan_file), "--output-dir",
                 str(out), "--held-out", "--no-progress"]) == 0  # fmt: skip
    with np.load(out / "reconstruction.npz") as result:
        positions = result["positions"]
    expected = scan.positions[holdout_mask(scan.positions, "left:0.25")]
    np.testing.assert_allclose(np.sort(positions, axis=0), np.sort(expected, axis=0))
    assert json.loads((out / "inference.json").read_text())["region"] == "held-out"
    # a model trained on the whole scan has no held-out region to reconstruct
    whole = tmp_path / "whole"
    assert main(["train", "--train-data", str(scan_file), "--output-dir", str(whole), *TINY_TRAIN]) == 0
    capsys.readouterr()
    assert main(["infer", "--model", str(whole / "model.zip"), "--data", str(scan_file), "--output-dir",
                 str(tmp_path / "x"), "--held-out"]) == 2  # fmt: skip
    assert "trained without a holdout region" in capsys.readouterr().err


def test_infer_region_and_train_probe_reach_their_code(scan, scan_file, tmp_path, monkeypatch):
    """--region selects its positions; --probe replaces the scan's probe in the network's physics."""
    modes = np.stack([scan.probe_modes[0], 0.3 * np.roll(scan.probe_modes[0], 2, axis=0)])
    probe_file = tmp_path / "probe.npy"
    np.save(probe_file, modes)
    run = tmp_path / "run"
    assert main(["train", "--train-data", str(scan_file), "--output-dir", str(run),
                 "--probe", str(probe_file), *TINY_TRAIN]) == 0  # fmt: skip
    from ptychopinn.workflows import load_model_bundle

    probe = load_model_bundle(run / "model.zip").module.net.forward_model.probe.numpy()
    assert probe.shape == modes.shape  # two modes: the file's, not the scan's one
    ratio = probe / modes
    np.testing.assert_allclose(ratio[np.abs(modes) > 1e-3 * np.abs(modes).max()], ratio.flat[0], rtol=1e-3)

    import ptychopinn.workflows.inference as inference

    seen = {}
    real = inference.make_dataloader

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "make_dataloader", spy)
    out = tmp_path / "region"
    assert main(["infer", "--model", str(run / "model.zip"), "--data", str(scan_file), "--output-dir",
                 str(out), "--region", "top:0.3", "--pin-memory", "--no-progress"]) == 0  # fmt: skip
    with np.load(out / "reconstruction.npz") as result:
        positions = result["positions"]
    expected = scan.positions[holdout_mask(scan.positions, "top:0.3")]
    np.testing.assert_allclose(np.sort(positions, axis=0), np.sort(expected, axis=0))
    assert seen["pin_memory"] is True
