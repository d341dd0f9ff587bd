"""Inference and benchmark options of issue 17: precision, batch by device, the GPU check's dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ptychopinn.cli.main import main
from ptychopinn.io import write_scan
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows import load_model_bundle, predict_object
from ptychopinn.workflows.pretrained import shipped_bundles

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    scan = simulate_scan(SimulationConfig(pattern_size=64, n_positions=16, step_px=10.0, seed=3))
    path = tmp_path_factory.mktemp("data") / "scan.npz"
    write_scan(scan, path)
    return path


def test_the_patches_of_inference_are_the_forward_pass_patches(scan_file):
    module = load_model_bundle(shipped_bundles()[0]).module
    x = torch.rand(3, 1, 64, 64)
    offsets = torch.zeros(3, 1, 2)
    with torch.no_grad():
        np.testing.assert_array_equal(
            module.net.predict_patches(x, offsets).numpy(), module(x, offsets)[0].numpy()
        )


@pytest.mark.parametrize("precision, autocast", [("fp32", False), ("bf16", True)])
def test_the_precision_flag_reaches_the_forward_pass(scan_file, tmp_path, monkeypatch, precision, autocast):
    seen = []
    original = torch.nn.Module.__call__

    def spy(self, *args, **kwargs):
        if type(self).__name__.endswith("Generator"):
            seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    out = tmp_path / "out"
    assert main(["infer", "--model", str(shipped_bundles()[0]), "--data", str(scan_file), "--output-dir",
                 str(out), "--precision", precision, "--no-progress"]) == 0  # fmt: skip
    assert seen and set(seen) == {autocast}
    info = json.loads((out / "inference.json").read_text())
    assert info["precision"] == precision and info["batch_size"] == 32  # 32 patterns: chosen for the CPU


def test_fp16_on_a_cpu_is_refused_before_anything_is_written(scan_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["infer", "--model", str(shipped_bundles()[0]), "--data", str(scan_file), "--output-dir",
                 str(out), "--precision", "fp16"]) == 2  # fmt: skip
    assert "fp16 needs a GPU" in capsys.readouterr().err and not out.exists()


def test_bf16_inference_stays_close_to_fp32(scan_file):
    from ptychopinn.io import read_scan

    module = load_model_bundle(shipped_bundles()[0]).module
    scan = read_scan(scan_file)
    full = predict_object(module, scan, gridsize=1, progress=False)
    half = predict_object(module, scan, gridsize=1, progress=False, precision="bf16")
    covered = full.coverage
    error = np.abs(half.object[covered] - full.object[covered]).mean() / np.abs(full.object[covered]).mean()
    assert error < 0.05


def test_the_gpu_check_runs_dry_on_a_cpu(tmp_path):
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "gpu_check_dry_run.json").read_text())
    assert results["dry_run"] is True
    for section in ("refinement", "inference", "training"):
        assert "error" not in json.dumps(results[section]), results[section]
