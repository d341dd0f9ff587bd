"""The command line, run as a user would: flags reach the code, errors are clear."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptychopinn.cli.main import main
from ptychopinn.io import read_scan


def test_simulate_flags_reach_the_simulator_and_inspect_passes(tmp_path, capsys):
    for suffix in ("npz", "cxi"):
        out = tmp_path / f"scan.{suffix}"
        code = main(
            [
                "simulate",
                "--output",
                str(out),
                "-N",
                "16",
                "--n-positions",
                "30",
                "--step",
                "3",
                "--object",
                "lines",
                "--scan",
                "spiral",
                "--photons",
                "5e3",
                "--beamstop-radius",
                "2",
                "--seed",
                "9",
                "--energy-ev",
                "6000",
                "--distance",
                "1.5",
                "--detector-pixel-size",
                "5e-5",
                "--amplitude-min",
                "0.8",
                "--phase-range",
                "1.0",
                "--include-patches",
                "--no-progress",
            ]
        )
        assert code == 0
        scan = read_scan(out)
        assert scan.n_patterns == 30 and scan.pattern_size == 16
        assert scan.mask is not None and not scan.mask[8, 8]
        assert scan.patches is not None
        assert scan.metadata.energy_ev == pytest.approx(6000)
        assert scan.metadata.detector_distance_m == pytest.approx(1.5)
        assert scan.metadata.detector_pixel_size_m == pytest.approx(5e-5)
        assert scan.metadata.photons_per_pattern == pytest.approx(5e3)
        assert np.abs(scan.object).min() >= 0.8 - 1e-6
        assert np.ptp(np.angle(scan.object)) <= 1.0 + 1e-6
        assert main(["inspect", str(out)]) == 0
    assert "problems: none" in capsys.readouterr().out
    # same seed, same file contents; the spiral trajectory was used (not a raster)
    a, b = read_scan(tmp_path / "scan.npz"), read_scan(tmp_path / "scan.cxi")
    np.testing.assert_array_equal(a.diffraction, b.get_patterns())
    steps = np.diff(np.unique(np.round(a.positions[:, 0], 6)))
    assert len(steps) > 20  # a raster would have ~6 distinct rows


def test_inspect_exits_nonzero_and_names_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, diffraction=np.ones((3, 8, 8)), xcoords=np.zeros(3), ycoords=np.zeros(3))
    assert main(["inspect", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "'probeGuess'" in out and "required key is missing" in out


def test_bad_output_suffix_and_bad_values_are_usage_errors(tmp_path, capsys):
    assert main(["simulate", "--output", str(tmp_path / "scan.txt")]) == 2
    assert "suffix" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["simulate", "--output", str(tmp_path / "s.npz"), "--photons", "-5"])
    assert caught.value.code == 2
    assert main(["simulate", "--output", str(tmp_path / "s.npz"), "-N", "15"]) == 2
    assert not (tmp_path / "s.npz").exists()


def test_example_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "example"
    args = [
        "example",
        "--output-dir",
        str(out),
        "--n-positions",
        "36",
        "--epochs",
        "1",
        "--refine-seconds",
        "2",
    ]
    assert main(args) == 0
    assert read_scan(out / "scan.npz").n_patterns == 36
    assert read_scan(out / "scan.cxi").n_patterns == 36
    assert (out / "training" / "model.zip").is_file()
    import matplotlib.image

    picture = matplotlib.image.imread(out / "scan_overview.png")
    assert picture.ndim == 3 and picture.shape[0] > 300 and picture[..., :3].std() > 0.05
    for name in ("amplitude.png", "phase.png", "reconstruction.npz", "metrics.json", "loss.png"):
        assert (out / "reconstruction" / name).is_file()
    printed = capsys.readouterr().out
    assert "problems: none" in printed
    assert "network prediction: phase SSIM" in printed and "after refinement: phase SSIM" in printed


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("ptychopinn")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("ptychopinn ")
    result = subprocess.run(
        [sys.executable, "-m", "ptychopinn", "inspect", "/nonexistent.npz"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no such file" in result.stdout
