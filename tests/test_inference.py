"""Model bundles (safe, verified, exact) and inference with stitching."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from ptychopinn.cli.main import main
from ptychopinn.config import RunConfig, load_run_config
from ptychopinn.evaluation import compare_objects
from ptychopinn.io import BundleError, read_bundle, read_scan, write_scan
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows import load_model_bundle, predict_object, train
from ptychopinn.workflows.inference import LoaderOptions


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory) -> Path:
    scan = simulate_scan(
        SimulationConfig(
            pattern_size=16,
            n_positions=49,
            step_px=3.0,
            object_kind="grf",
            photons_per_pattern=1e4,
            seed=4,
        )
    )
    path = tmp_path_factory.mktemp("data") / "scan.npz"
    write_scan(scan, path)
    return path


@pytest.fixture(scope="module")
def trained(scan_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = load_run_config(
        overrides={
            "data": {"train_data": str(scan_file), "gridsize": 2, "val_fraction": 0.2},
            "model": {"width": 4, "depth": 2, "modes": 4},
            "training": {"epochs": 1},
            "execution": {
                "accelerator": "cpu",
                "logger": "none",
                "progress_bar": False,
                "batch_size": 8,
            },
        }
    )
    return train(config, out)


def rewrite_bundle(source: Path, target: Path, *, manifest=None, members=None, weights=None):
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if manifest is not None:
        contents["manifest.json"] = json.dumps(manifest).encode()
    if weights is not None:
        contents["weights.safetensors"] = weights
    contents.update(members or {})
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return target


def test_training_writes_bundles_and_they_round_trip_bit_identically(trained, scan_file):
    assert trained.bundle.is_file() and trained.best_bundle.is_file()
    loaded = load_model_bundle(trained.bundle)
    assert loaded.gridsize == 2 and loaded.pattern_size == 16
    assert loaded.manifest["generator"] == "fno" and loaded.manifest["format_version"] == 1
    assert loaded.manifest["input_scale"] == pytest.approx(float(trained.module.input_scale))
    assert isinstance(loaded.config, RunConfig)
    scan = read_scan(scan_file)
    original = predict_object(trained.module.cpu(), scan, gridsize=2, batch_size=7, progress=False)
    reloaded = predict_object(loaded.module, scan, gridsize=2, batch_size=7, progress=False)
    assert np.array_equal(original.object, reloaded.object)
    for key, value in trained.module.state_dict().items():
        assert torch.equal(value.cpu(), loaded.module.state_dict()[key]), key


def test_bundle_holds_only_json_and_safetensors(trained):
    with zipfile.ZipFile(trained.bundle) as archive:
        assert sorted(archive.namelist()) == ["manifest.json", "weights.safetensors"]
        manifest = json.loads(archive.read("manifest.json"))
        payload = archive.read("weights.safetensors")
    assert b"\x80\x04" not in payload[:2]  # not a pickle stream
    for key in (
        "package_version",
        "created",
        "config",
        "generator",
        "pattern_size",
        "gridsize",
        "input_scale",
        "photon_scale",
        "payloads",
    ):
        assert key in manifest
    _, tensors = read_bundle(trained.bundle)
    assert manifest["probe_key"] in tensors


def test_inspect_shows_what_a_bundle_holds(trained, tmp_path, capsys):
    assert main(["inspect", str(trained.bundle)]) == 0
    printed = capsys.readouterr().out
    assert "model bundle" in printed and "generator" in printed and "(verified)" in printed
    assert "net.forward_model.probe_real" in printed and "problems: none" in printed
    with zipfile.ZipFile(trained.bundle) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["weights.safetensors"] = members["weights.safetensors"][:-1] + b"\x00"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert main(["inspect", str(bad)]) == 2
    assert "SHA-256" in capsys.readouterr().out


def test_tampered_payload_is_refused(trained, tmp_path):
    with zipfile.ZipFile(trained.bundle) as archive:
        payload = bytearray(archive.read("weights.safetensors"))
    payload[-5] ^= 0xFF  # flip one byte of the weights
    bad = rewrite_bundle(trained.bundle, tmp_path / "flipped.zip", weights=bytes(payload))
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        load_model_bundle(bad)


def test_flipped_byte_in_the_file_is_refused(trained, tmp_path):
    data = bytearray(trained.bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "corrupt.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(BundleError):
        load_model_bundle(bad)


def test_newer_format_version_is_refused(trained, tmp_path):
    manifest, _ = read_bundle(trained.bundle)
    manifest["format_version"] = 99
    bad = rewrite_bundle(trained.bundle, tmp_path / "newer.zip", manifest=manifest)
    with pytest.raises(BundleError, match="format version 99 is newer"):
        load_model_bundle(bad)


def test_pickle_payloads_never_run(trained, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps(Exploit())
    # a pickle in place of the weights, with a manifest hash that matches it
    manifest, _ = read_bundle(trained.bundle)
    import hashlib

    manifest["payloads"]["weights.safetensors"]["sha256"] = hashlib.sha256(evil).hexdigest()
    swapped = rewrite_bundle(trained.bundle, tmp_path / "pickle.zip", manifest=manifest, weights=evil)
    with pytest.raises(BundleError, match="not a safetensors payload|the manifest says"):
        load_model_bundle(swapped)
    # a pickle beside the weights
    extra = rewrite_bundle(trained.bundle, tmp_path / "extra.zip", members={"model.pkl": evil})
    with pytest.raises(BundleError, match="unexpected member"):
        load_model_bundle(extra)
    assert not marker.exists()


def test_zip_path_tricks_are_refused(trained, tmp_path):
    for name in ("../evil.txt", "/etc/evil", "sub/../../evil"):
        bad = rewrite_bundle(trained.bundle, tmp_path / "trick.zip", members={name: b"x"})
        with pytest.raises(BundleError, match="unsafe path"):
            load_model_bundle(bad)
    not_zip = tmp_path / "plain.zip"
    not_zip.write_text("hello")
    with pytest.raises(BundleError, match="not a zip archive"):
        load_model_bundle(not_zip)


class TruthLookup(nn.Module):
    """Test double of a generator: returns the true patch of each input pattern.

    It recognises a pattern by its (exact) normalised amplitudes; the physics layer, grouping
    and stitching around it are the real ones.
    """

    def __init__(self, scan, scale: float):
        super().__init__()
        self.inputs = torch.from_numpy(np.sqrt(scan.diffraction) * np.float32(scale)).flatten(1)
        self.truth = torch.from_numpy(scan.patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, N*N)
        distances = torch.cdist(flat.reshape(-1, flat.shape[-1]), self.inputs)
        index = distances.argmin(dim=1)
        return self.truth[index].reshape(x.shape).to(torch.complex64)


def truth_module(trained, scan, gridsize):
    module = load_model_bundle(trained.bundle).module
    module.hparams.channels = gridsize**2
    module.net.generator = TruthLookup(scan, float(module.input_scale))
    module.net.forward_model.probe_real.data = torch.view_as_real(torch.from_numpy(scan.probe_modes))
    return module


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("jitter", [0.0, 0.7])
def test_true_patches_through_real_physics_and_stitching_reproduce_the_object(trained, gridsize, jitter):
    scan = simulate_scan(
        SimulationConfig(
            pattern_size=16,
            n_positions=64,
            step_px=3.0,
            object_kind="grf",
            photons_per_pattern=1e4,
            include_patches=True,
            seed=8,
            jitter_px=jitter,
        )
    )
    module = truth_module(trained, scan, gridsize)
    result = predict_object(module, scan, gridsize=gridsize, batch_size=10, progress=False)
    assert result.object.shape == scan.object.shape
    assert not result.coverage[0, 0] and result.object[0, 0] == 0
    covered = result.coverage
    error = np.abs(result.object - scan.object)[covered] / np.abs(scan.object).max()
    if jitter == 0:  # integer positions: every step is exact
        assert error.max() < 1e-5
    else:  # sub-pixel positions: bilinear interpolation of a rough object, twice
        assert error.mean() < 2e-2
    comparison = compare_objects(result.object, scan.object, covered)
    assert comparison.phase.ssim > 0.95 and comparison.amplitude.pearson > 0.95


def test_infer_cli_writes_every_documented_output(trained, scan_file, tmp_path, capsys):
    out = tmp_path / "inference"
    code = main(
        [
            "infer",
            "--model_path",
            str(trained.bundle),
            "--test_data",
            str(scan_file),
            "--output_dir",
            str(out),
            "--accelerator",
            "cpu",
            "--inference-batch-size",
            "5",
            "--n_images",
            "30",
            "--num-workers",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "phase against the ground truth: SSIM" in capsys.readouterr().out  # the scan has a truth
    scan = read_scan(scan_file)
    with np.load(out / "reconstruction.npz", allow_pickle=False) as data:
        assert data["object"].dtype == np.complex64 and data["object"].shape == scan.object.shape
        assert data["amplitude"].dtype == np.float32 and data["phase"].dtype == np.float32
        assert data["coverage"].dtype == bool and data["coverage"].shape == scan.object.shape
        assert data["positions"].shape == (scan.n_patterns, 2)
        assert float(data["pixel_size_m"]) == pytest.approx(scan.pixel_size_m())
        np.testing.assert_allclose(data["amplitude"], np.abs(data["object"]), rtol=1e-6)
    for name in ("amplitude.tiff", "phase.tiff"):
        image = tifffile.imread(out / name)
        assert image.dtype == np.float32 and image.shape == scan.object.shape
    import matplotlib.image

    for name in ("amplitude.png", "phase.png"):
        assert matplotlib.image.imread(out / name).ndim == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"ssim", "psnr_db", "pearson", "mae", "data_range"} <= set(metrics["phase"])
    info = json.loads((out / "inference.json").read_text())
    assert info["batch_size"] == 5 and info["device"] == "cpu"
    assert (out / "report.html").is_file() and (out / "comparison.png").is_file()
    # evaluate reads what infer wrote and agrees with infer's own metrics
    assert (
        main(
            [
                "evaluate",
                "--reconstruction",
                str(out),
                "--ground-truth",
                str(scan_file),
                "--output-dir",
                str(tmp_path / "evaluation"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert again["phase"]["ssim"] == pytest.approx(metrics["phase"]["ssim"], rel=1e-6)


def test_infer_cli_reports_bad_bundles_clearly(scan_file, tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    code = main(
        [
            "infer",
            "--model",
            str(bad),
            "--data",
            str(scan_file),
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "not a model bundle" in capsys.readouterr().err


def test_lazily_read_cxi_gives_the_same_reconstruction_as_npz(trained, scan_file, tmp_path):
    scan = read_scan(scan_file)
    cxi = tmp_path / "scan.cxi"
    write_scan(scan, cxi)
    lazy = read_scan(cxi)
    assert lazy.is_lazy
    module = load_model_bundle(trained.bundle).module
    from_npz = predict_object(module, scan, gridsize=2, batch_size=6, progress=False)
    from_cxi = predict_object(module, lazy, gridsize=2, batch_size=6, loader=LoaderOptions(num_workers=1),
                              progress=False)  # fmt: skip
    assert np.array_equal(from_npz.object, from_cxi.object)


def test_infer_refuses_a_scan_of_another_size(trained, tmp_path):
    other = simulate_scan(SimulationConfig(pattern_size=32, n_positions=9, step_px=4))
    with pytest.raises(ValueError, match="model expects 16"):
        predict_object(load_model_bundle(trained.bundle).module, other, gridsize=2, progress=False)


def test_data_consistency_steps_need_a_gridsize_1_fno_network(trained, scan_file, tmp_path, capsys):
    code = main(["infer", "--model", str(trained.bundle), "--data", str(scan_file),
                 "--output-dir", str(tmp_path / "out"), "--data-consistency-steps", "2",
                 "--no-progress"])  # fmt: skip
    assert code != 0
    assert "gridsize-1 fno" in capsys.readouterr().err
    assert not (tmp_path / "out" / "reconstruction.npz").exists()
