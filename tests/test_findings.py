"""The remaining findings of the issue-15 audit, one test each (the others live beside their code:
test_safety, test_run_folder, test_values_on_load, test_hostile_bundles, test_hostile_flags).
"""

from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest

from conftest import TINY_TRAIN, write_ptychodus_folder
from ptychopinn.cli.main import main
from ptychopinn.io import ScanFileError, ScanValidationError, read_scan, write_scan
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows import inspect_file
from ptychopinn.workflows.pretrained import shipped_bundles

READ_ERRORS = (ScanFileError, ScanValidationError)


@pytest.fixture(scope="module")
def scan():
    return simulate_scan(SimulationConfig(pattern_size=16, n_positions=25, step_px=3.0, seed=6))


@pytest.fixture(scope="module")
def scan_file(scan, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "scan.npz"
    write_scan(scan, path)
    return path


def test_simulating_a_huge_detector_is_refused_at_once(tmp_path, capsys):
    assert main(["simulate", "-o", str(tmp_path / "s.npz"), "-N", "100000"]) == 2
    assert "4096-pixel" in capsys.readouterr().err and not (tmp_path / "s.npz").exists()


def test_an_unreachable_mlflow_server_ends_the_run_at_once(scan_file, tmp_path, capsys):
    started = time.perf_counter()
    code = main(["train", "--train-data", str(scan_file), "--output-dir", str(tmp_path / "o"), *TINY_TRAIN,
                 "--logger", "mlflow", "--mlflow-tracking-uri", "http://127.0.0.1:9"])  # fmt: skip
    assert code == 2 and "cannot reach 127.0.0.1:9" in capsys.readouterr().err
    assert time.perf_counter() - started < 30 and not (tmp_path / "o").exists()


def test_cxi_oddities_are_clear_errors(scan, tmp_path):
    path = tmp_path / "scan.cxi"
    for change in ("string_translation", "data_type_group", "object_without_data_type"):
        write_scan(scan.replace(object=scan.object), path)
        with h5py.File(path, "a") as handle:
            if change == "string_translation":
                del handle["entry_1/ptychopinn/positions_px"]
                del handle["entry_1/sample_1/geometry_1/translation"]
                handle["entry_1/sample_1/geometry_1/translation"] = np.array([[b"1", b"2", b"3"]] * 25)
            elif change == "data_type_group":
                del handle["entry_1/image_1/data_type"]
                handle.create_group("entry_1/image_1/data_type")
            else:
                del handle["entry_1/image_1/data_type"]
        if change == "object_without_data_type":
            assert read_scan(path).object is None  # an image of unknown kind is not taken as truth
            continue
        with pytest.raises(READ_ERRORS):
            read_scan(path)


def test_ptychodus_odd_names_and_masks(scan, tmp_path):
    folder = write_ptychodus_folder(scan, tmp_path / "run")
    with h5py.File(folder / "product.h5", "a") as handle:
        handle.attrs["name"] = b"\xff\xfe not utf-8"
    assert read_scan(folder).n_patterns == scan.n_patterns  # the name is only a label
    with h5py.File(folder / "diffraction.h5", "a") as handle:
        del handle["bad_pixels"]
        handle["bad_pixels"] = np.zeros((3, 3), bool)
    with pytest.raises(ScanValidationError, match="does not match patterns"):
        read_scan(folder)


def test_a_wrong_shape_mask_on_the_lazy_path_is_a_clear_error(scan, tmp_path):
    path = tmp_path / "scan.npz"
    write_scan(scan.replace(mask=np.ones((16, 16), bool)), path)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ones((5, 5), bool))
    members["detector_mask.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ScanValidationError, match="mask"):
        read_scan(path, lazy=True)


def test_inspect_labels_a_bundle_as_a_model_and_infer_keeps_its_bundle(scan, tmp_path, capsys):
    bundle = shipped_bundles()[0]
    assert main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "\nmodel:\n" in out and "\nscan:\n" not in out
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.zip").write_bytes(bundle.read_bytes())
    (folder / ".ptychopinn-run.json").write_text(json.dumps({"command": "train", "writes": ["model.zip"]}))
    data = tmp_path / "scan64.npz"
    write_scan(simulate_scan(SimulationConfig(pattern_size=64, n_positions=9, step_px=10.0, seed=2)), data)
    model = str(folder / "model.zip")
    assert main(["infer", "--model", model, "--data", str(data), "--output-dir", str(folder),
                 "--overwrite", "--no-progress", "--no-pin-memory"]) == 0  # fmt: skip
    assert (folder / "model.zip").read_bytes() == bundle.read_bytes()  # the input survives --overwrite
    report = (folder / "report.html").read_text()
    assert "pin_memory" in report and "learning_rate" not in report  # inference settings, not training


def test_a_run_prints_no_lightning_adverts(scan_file, tmp_path, capsys):
    assert (
        main(["train", "--train-data", str(scan_file), "--output-dir", str(tmp_path / "o"), *TINY_TRAIN]) == 0
    )
    captured = capsys.readouterr()
    for noise in ("litlogger", "GPU available", "logging interval", "LeafSpec"):
        assert noise not in captured.err + captured.out


def test_help_names_the_optimiser_that_runs(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "AdamW learning rate" in capsys.readouterr().out


def test_inspect_never_passes_a_bundle_that_cannot_load(tmp_path):
    import hashlib
    import zipfile

    with zipfile.ZipFile(shipped_bundles()[0]) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        weights = archive.read("weights.safetensors")
    manifest["pattern_size"] = 30000
    manifest["payloads"]["weights.safetensors"]["sha256"] = hashlib.sha256(weights).hexdigest()
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("weights.safetensors", weights)
    report = inspect_file(path)  # the package's inspect (workflows): it rebuilds the network
    assert not report.ok and "do not fit" in report.format_text()


def test_refinement_prints_status_lines_when_not_on_a_terminal(scan_file, tmp_path, capsys, monkeypatch):
    from ptychopinn.workflows import reconstruction

    monkeypatch.setattr(reconstruction, "PROGRESS_LINE_S", 0.0)  # every epoch, instead of every 30 s
    assert main(["reconstruct", str(scan_file), "--output-dir", str(tmp_path / "r"), "--epochs", "3",
                 "--no-pretrained"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("refining: epoch") == 3 and "refining: epoch 3, loss" in out
