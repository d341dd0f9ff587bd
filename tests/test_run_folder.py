"""One run per output folder, inputs never written, resumable checkpoints (issue 15, findings 2, 3, 6, 8, 9).

Real runs of the command line on a tiny scan and a tiny network: a second run into a used
folder, outputs that would replace inputs, folders that cannot be, checkpoints cut short.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import write_ptychodus_folder
from ptychopinn.cli.main import main
from ptychopinn.io import write_scan
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows import load_model_bundle
from ptychopinn.workflows.run_folder import RUN_RECORD, AtomicCheckpointIO, claim_output_folder

TINY = ["--width", "4", "--depth", "2", "--modes", "4", "--accelerator", "cpu", "--no-progress-bar",
        "--batch-size", "8"]  # fmt: skip


@pytest.fixture(scope="module")
def scan():
    return simulate_scan(SimulationConfig(pattern_size=16, n_positions=25, step_px=3.0, seed=4))


@pytest.fixture(scope="module")
def scan_file(scan, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "scan.npz"
    write_scan(scan, path)
    return path


def train(scan_file, out, *extra) -> int:
    return main(["train", "--train-data", str(scan_file), "--output-dir", str(out), *TINY, *extra])


def test_a_second_training_run_into_a_used_folder_is_refused_then_replaced_whole(scan_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(scan_file, out, "--epochs", "1") == 0
    bundle = (out / "model.zip").read_bytes()
    capsys.readouterr()
    assert train(scan_file, out, "--epochs", "2") == 2
    err = capsys.readouterr().err
    assert "earlier 'train' run" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "model.zip").read_bytes() == bundle  # nothing of the refused run was written
    assert train(scan_file, out, "--epochs", "2", "--overwrite") == 0
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["best-epoch=001.ckpt", "last.ckpt"]  # this run's own: no last-v1.ckpt, no epoch 0
    assert [p.name for p in (out / "logs").iterdir()] == ["version_0"]
    assert load_model_bundle(out / "model.zip").manifest["epochs_completed"] == 2
    assert json.loads((out / RUN_RECORD).read_text())["command"] == "train"
    # a --logger none run over a csv run shows no curve of the earlier run
    assert train(scan_file, out, "--epochs", "1", "--overwrite", "--logger", "none") == 0
    assert not (out / "training_curves.png").exists() and not (out / "logs").exists()


def test_resume_takes_its_own_runs_checkpoint(scan_file, tmp_path):
    out = tmp_path / "run"
    assert train(scan_file, out, "--epochs", "1") == 0
    assert train(scan_file, out, "--epochs", "2", "--resume", "last") == 0
    assert load_model_bundle(out / "model.zip").manifest["epochs_completed"] == 2
    assert json.loads((out / RUN_RECORD).read_text())["resumed"] is True


def test_training_never_replaces_the_bundle_it_starts_from(scan_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(scan_file, out, "--epochs", "1") == 0
    bundle = (out / "model.zip").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert train(scan_file, out, "--epochs", "1", "--init-from", str(out / "model.zip"), *extra) == 2
        assert "would replace its input" in capsys.readouterr().err
    assert (out / "model.zip").read_bytes() == bundle


def test_reconstruct_never_replaces_ptychodus_product(scan, tmp_path, capsys):
    folder = write_ptychodus_folder(scan, tmp_path / "ptychodus-run")
    product = (folder / "product.h5").read_bytes()
    for extra in ([], ["--overwrite"]):
        code = main(["reconstruct", str(folder), "--output-dir", str(folder), "--epochs", "1",
                     "--no-pretrained", "--ptychodus-product", "--no-progress", *extra])  # fmt: skip
        assert code == 2 and "product.h5 there, which would replace its input" in capsys.readouterr().err
    assert (folder / "product.h5").read_bytes() == product
    assert not (folder / "reconstruction.npz").exists()


def test_an_input_named_like_an_output_in_the_output_folder_is_kept(scan, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    data = out / "reconstruction.npz"  # a scan that happens to carry an output's name
    write_scan(scan, data)
    before = data.read_bytes()
    code = main(["reconstruct", str(data), "--output-dir", str(out), "--epochs", "1", "--no-pretrained",
                 "--no-progress", "--overwrite"])  # fmt: skip
    assert code == 2 and "would replace its input" in capsys.readouterr().err
    assert data.read_bytes() == before


@pytest.mark.parametrize("kind", ["file", "under_file", "empty"])
def test_impossible_output_folders_are_one_line_errors(scan_file, tmp_path, capsys, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    target = {"file": str(blocker), "under_file": str(blocker / "run"), "empty": ""}[kind]
    before = sorted(os.listdir(tmp_path))
    for command in (
        ["train", "--train-data", str(scan_file), "--output-dir", target, *TINY, "--epochs", "1"],
        ["reconstruct", str(scan_file), "--output-dir", target, "--epochs", "1", "--no-pretrained"],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--output-dir" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before and blocker.read_text() == "a file"


def test_an_empty_or_cut_last_checkpoint_never_blocks_resume(scan_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(scan_file, out, "--epochs", "1", "--checkpoint-every", "1", "--save-top-k", "-1") == 0
    last = out / "checkpoints" / "last.ckpt"
    whole = last.read_bytes()
    for cut in (b"", whole[: len(whole) // 2]):
        last.write_bytes(cut)
        assert train(scan_file, out, "--epochs", "2", "--resume", "last") == 2
        assert "empty, truncated or not a Lightning checkpoint" in capsys.readouterr().err
        assert train(scan_file, out, "--epochs", "2", "--resume", "auto") == 0  # the best-*.ckpt, or afresh
        assert load_model_bundle(out / "model.zip").manifest["epochs_completed"] == 2
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert train(scan_file, out, "--epochs", "3", "--resume", str(garbage)) == 2


def test_checkpoints_are_written_beside_their_target_whatever_tmpdir(tmp_path, monkeypatch):
    """A crash mid-write leaves the previous checkpoint whole and no temporary file."""
    elsewhere = tmp_path / "tmpdir-elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, target)
    assert torch.load(target)["step"] == 1

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target)["step"] == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"] and not list(elsewhere.iterdir())


def test_the_machine_is_checked_before_anything_is_written(scan_file, tmp_path, capsys):
    out = tmp_path / "never"
    if not torch.cuda.is_available():
        assert train(scan_file, out, "--epochs", "1", "--accelerator", "gpu") == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert train(scan_file, out, "--epochs", "1", "--devices", "999") == 2
    assert "ask for at most" in capsys.readouterr().err
    assert train(scan_file, out, "--epochs", "1", "--n-groups", "1000000000") == 2
    assert "n_groups" in capsys.readouterr().err
    assert not out.exists()


def test_upstream_flags_are_understood_and_abbreviations_are_not(scan_file, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--train-data", str(scan_file), "--output-dir", str(out), "--width", "4", "--depth", "2",
             "--modes", "4", "--epochs", "1", "--device", "cpu", "--disable_mlflow", "--quiet"]  # fmt: skip
    assert main(["train", *flags]) == 0
    config = (out / "config.yaml").read_text()
    assert "accelerator: cpu" in config and "logger: none" in config and "progress_bar: false" in config
    with pytest.raises(SystemExit) as caught:
        main(["train", "--train-data", str(scan_file), "--output-dir", str(tmp_path / "x"), "--dev", "1"])
    assert caught.value.code == 2


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.npz")]) == 2
    missing = str(tmp_path / "missing.npz")
    assert main(["reconstruct", missing, "--output-dir", str(tmp_path / "o"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "no such file" in err


def test_claim_refuses_a_used_folder_and_keeps_foreign_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    claim_output_folder(out, command="evaluate")
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="earlier 'evaluate' run"):
        claim_output_folder(out, command="evaluate")
    claim_output_folder(out, command="evaluate", overwrite=True)
    assert not (out / "metrics.json").exists() and (out / "notes.txt").read_text() == "mine"
