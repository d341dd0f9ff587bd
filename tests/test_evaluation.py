"""Evaluation metrics, FRC, the evaluate command and the HTML report."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from scipy import ndimage

from ptychopinn.cli.main import main
from ptychopinn.evaluation import compare_objects, fourier_ring_correlation
from ptychopinn.io import write_scan
from ptychopinn.simulate import SimulationConfig, make_object, simulate_scan


@pytest.fixture(scope="module")
def truth():
    return make_object("grf", (96, 96), np.random.default_rng(0), phase_range=2.0, amplitude_min=0.4)


def fourier_shift(image, shift):
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift)).astype(np.complex64)


def test_metrics_are_invariant_to_phase_offset_subpixel_shift_and_amplitude_scale(truth):
    altered = 1.7 * fourier_shift(truth, (0.4, -0.3)) * np.exp(1j * 0.9)
    comparison = compare_objects(altered, truth)
    assert comparison.shift_px == pytest.approx((-0.4, 0.3), abs=0.06)
    assert comparison.amplitude_scale == pytest.approx(1 / 1.7, rel=0.02)
    for channel in (comparison.amplitude, comparison.phase):
        assert channel.ssim > 0.97 and channel.pearson > 0.99


def test_identical_images_give_frc_one_and_ssim_one(truth):
    comparison = compare_objects(truth, truth)
    for channel in (comparison.amplitude, comparison.phase):
        assert channel.ssim == pytest.approx(1.0)
        assert channel.pearson == pytest.approx(1.0)
        assert channel.psnr_db > 100
        np.testing.assert_allclose(channel.frc.frc[1:], 1.0, atol=1e-9)
        assert channel.frc.resolution_px == 1.0


def test_psnr_uses_the_explicit_data_range(truth):
    noisy = truth * np.exp(1j * 0.01 * np.random.default_rng(1).standard_normal(truth.shape))
    comparison = compare_objects(noisy.astype(np.complex64), truth, register=False)
    reference, estimate = np.angle(comparison.reference), np.angle(comparison.aligned)
    data_range = float(reference.max() - reference.min())
    mse = float(np.mean((estimate - reference) ** 2))
    assert comparison.phase.data_range == pytest.approx(data_range)
    assert comparison.phase.psnr_db == pytest.approx(10 * np.log10(data_range**2 / mse))
    # an implicit peak of 255 on these data would read about 40 dB higher
    assert comparison.phase.psnr_db < 10 * np.log10(255**2 / mse) - 30


def test_a_flat_reconstruction_has_low_pearson_even_with_a_small_mae():
    rng = np.random.default_rng(2)
    weak = ndimage.gaussian_filter(rng.standard_normal((64, 64)), 3)
    weak_phase = 0.05 * weak / np.abs(weak).max()  # a faint phase object
    truth = np.exp(1j * weak_phase).astype(np.complex64)
    flat = np.ones_like(truth)
    comparison = compare_objects(flat, truth, register=False)
    assert comparison.phase.mae < 0.03  # looks fine
    assert abs(comparison.phase.pearson) < 0.1  # but correlates with nothing


def test_noise_lowers_the_frc():
    rng = np.random.default_rng(3)
    image = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 1.5)
    results = [
        fourier_ring_correlation(image, image + level * rng.standard_normal(image.shape))
        for level in (0.0, 0.02, 0.1)
    ]
    assert results[0].resolution_px <= results[1].resolution_px < results[2].resolution_px
    means = [r.frc[1:].mean() for r in results]
    assert means[0] > means[1] > means[2]
    assert fourier_ring_correlation(image, image, pixel_size_m=5e-8).resolution_m == pytest.approx(5e-8)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self._in_heading = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self._in_heading = tag in ("h1", "h2")

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data)
            self._in_heading = False


@pytest.fixture(scope="module")
def reconstructed(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    scan = simulate_scan(
        SimulationConfig(
            pattern_size=16, n_positions=49, step_px=3.0, object_kind="grf", photons_per_pattern=1e5, seed=6
        )
    )
    data = root / "scan.npz"
    write_scan(scan, data)
    assert (
        main(
            [
                "reconstruct",
                str(data),
                "--output-dir",
                str(root / "rec"),
                "--epochs",
                "15",
                "--accelerator",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    return root, data


def test_evaluate_works_on_reconstruct_outputs_and_writes_a_report(reconstructed, tmp_path, capsys):
    root, data = reconstructed
    out = tmp_path / "evaluation"
    assert (
        main(
            [
                "evaluate",
                "--reconstruction",
                str(root / "rec"),
                "--ground-truth",
                str(data),
                "--data",
                str(data),
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "phase against the ground truth: SSIM" in printed and "FRC resolution" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["phase"]["ssim"] > 0.8
    assert {"frc_resolution_px", "psnr_db", "data_range"} <= set(metrics["phase"])
    assert metrics["data_fidelity"]["poisson_deviance"] >= 0
    # the same numbers as reconstruct's own metrics: one code path
    own = json.loads((root / "rec" / "metrics.json").read_text())
    assert own["phase"]["ssim"] == pytest.approx(metrics["phase"]["ssim"], rel=1e-6)
    collector = _Collector()
    collector.feed((out / "report.html").read_text())
    assert any(
        img["src"].startswith("data:image/png;base64,") and img.get("title") == "comparison.png"
        for img in collector.images
    )
    assert "Metrics" in collector.headings
    run_report = _Collector()
    run_report.feed((root / "rec" / "report.html").read_text())
    titles = {img.get("title") for img in run_report.images}
    assert {"amplitude.png", "phase.png", "loss.png", "comparison.png"} <= titles


def test_evaluate_without_truth_uses_the_data_and_refuses_nothing_to_compare(reconstructed, tmp_path, capsys):
    root, data = reconstructed
    assert (
        main(
            [
                "evaluate",
                "--reconstruction",
                str(root / "rec" / "reconstruction.npz"),
                "--data",
                str(data),
                "--output-dir",
                str(tmp_path / "fidelity"),
                "--half-scan-seconds",
                "1",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "fidelity" / "metrics.json").read_text())
    assert "poisson_nll" in metrics["data_fidelity"]
    assert metrics["half_scan_frc"]["phase"]["resolution_px"] >= 1.0
    assert main(["evaluate", "--reconstruction", str(root / "rec"), "--output-dir", str(tmp_path / "x")]) == 2
    assert "nothing to evaluate against" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(reconstructed, tmp_path):
    root, _ = reconstructed
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            (root / "rec" / "report.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 10_000


def _siemens_star(size: int = 192, spokes: int = 24) -> np.ndarray:
    """Phase 0 / 0.6 rad spokes (a binary Siemens star), unit amplitude."""
    axis = np.arange(size) - size / 2
    angle = np.arctan2(axis[:, None], axis[None, :])
    phase = 0.6 * (np.sin(spokes / 2 * angle) > 0)
    return np.exp(1j * phase).astype(np.complex64)


def test_frc_resolution_ignores_a_dip_in_the_lowest_rings():
    star = np.angle(_siemens_star())
    rng = np.random.default_rng(0)
    size = star.shape[0]
    # a slow background on one copy decorrelates only the lowest rings
    slope = np.linspace(-1, 1, size)
    first = star + 0.01 * rng.standard_normal(star.shape)
    second = star + 3.0 * (slope[:, None] + slope[None, :]) + 0.01 * rng.standard_normal(star.shape)
    result = fourier_ring_correlation(first, second)
    assert result.frc[1] < result.threshold[1]  # the dip is there, in the first bins
    assert result.resolution_px < 3.0  # but the curve holds up to near Nyquist


def test_phase_pictures_use_a_cyclic_map_only_for_ranges_near_two_pi(tmp_path):
    import matplotlib

    from ptychopinn.workflows.figures import phase_colormap, plot_comparison

    assert phase_colormap(-np.pi, np.pi) == "twilight"
    narrow = matplotlib.colormaps[phase_colormap(0.0, 0.6)]
    assert np.abs(np.subtract(narrow(0.0), narrow(1.0))).max() > 0.3  # the two levels differ
    star = _siemens_star(96)
    comparison = compare_objects(star * np.exp(0.05j), star, np.ones(star.shape, bool), register=False)
    plot_comparison(comparison, tmp_path / "comparison.png")
    picture = matplotlib.pyplot.imread(tmp_path / "comparison.png")
    assert picture.shape[0] > 100 and np.unique(picture.reshape(-1, picture.shape[-1]), axis=0).shape[0] > 50
