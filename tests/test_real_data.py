"""Scans from outside our simulator: the array importer, probe calibration, blind probe
retrieval and the preconditioned solver, on simulated scans and on the real Velociprobe scan."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ptychopinn.io import ArrayLayout, ScanValidationError, detect_zero_frequency, read_arrays, read_scan
from ptychopinn.physics import add_probe_modes, diffraction_intensity, orthogonalize_modes
from ptychopinn.refine import RefinementConfig, refine_object
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows.evaluation import compare_to_truth

REPO = Path(__file__).resolve().parents[1]
DESCRIPTION = REPO / "examples" / "velociprobe-siemens-star.yaml"
REAL_FILE = REPO.parent / "shared" / "data" / "velociprobe-siemens-star" / "siemens-star-small.npz.bz2"
needs_real_scan = pytest.mark.skipif(
    not REAL_FILE.is_file(),
    reason=f"the real scan is not at {REAL_FILE} (../shared/data beside the repository)",
)

SMALL = SimulationConfig(
    pattern_size=32, n_positions=100, step_px=4.0, object_kind="grf", photons_per_pattern=1e6, seed=3
)


@pytest.fixture(scope="module")
def small_scan():
    return simulate_scan(SMALL.replace(noise=False))


@pytest.fixture(scope="module")
def real_scan():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_scan(DESCRIPTION)


def _write_tike_style(path: Path, scan, *, amplitude: bool = False, gap: bool = False) -> None:
    """The scan as tike-style arrays: (1, n, N, N) uncentred patterns, window corners."""
    counts = np.fft.ifftshift(scan.diffraction, axes=(-2, -1))[None]
    if gap:
        counts = counts.copy()
        counts[0, :, 5, 7] = np.nan
    data = np.sqrt(counts) if amplitude else counts
    corners = scan.positions - scan.pattern_size / 2
    np.savez(path, data=data.astype(np.float32), scan=corners[None], probe=scan.probe[None, None] * 3e-3)


# -- the importer -----------------------------------------------------------------------------
@needs_real_scan
def test_the_real_scan_is_read_from_its_description(real_scan):
    assert real_scan.diffraction.shape == (516, 128, 128)
    mean = real_scan.diffraction.mean(axis=0)
    grid = np.arange(128)
    centroid = [(mean.sum(axis=1) * grid).sum() / mean.sum(), (mean.sum(axis=0) * grid).sum() / mean.sum()]
    assert np.allclose(centroid, 64, atol=4)  # the zone plate's annulus, centred
    assert detect_zero_frequency(mean)[0] == "centre"
    assert real_scan.positions.min(axis=0) == pytest.approx([64.0, 64.0])
    assert real_scan.probe.shape == (128, 128)
    assert real_scan.diffraction.sum(axis=(1, 2)).mean() == pytest.approx(4.61e5, rel=0.01)


def test_arrays_in_other_conventions_read_as_our_own(tmp_path, small_scan):
    for amplitude in (False, True):
        path = tmp_path / f"scan-{amplitude}.npz"
        _write_tike_style(path, small_scan, amplitude=amplitude)
        layout = ArrayLayout(
            file=str(path), diffraction="data", positions="scan", probe="probe",
            values="amplitude" if amplitude else "counts", positions_reference="corner",
        )  # fmt: skip
        with pytest.warns(UserWarning, match="zero frequency at the corner"):
            scan = read_arrays(layout)
        np.testing.assert_allclose(scan.diffraction, small_scan.diffraction, rtol=1e-4, atol=1e-3)
        shift = small_scan.positions.min(axis=0) - scan.positions.min(axis=0)
        np.testing.assert_allclose(scan.positions + shift, small_scan.positions, atol=1e-9)


def test_positions_as_x_y_in_metres(tmp_path, small_scan):
    path = tmp_path / "xy.npz"
    pixel = 5e-8
    np.savez(path, data=small_scan.diffraction, x=small_scan.positions[:, 1] * pixel,
             y=small_scan.positions[:, 0] * pixel, probe=small_scan.probe)  # fmt: skip
    description = tmp_path / "scan.yaml"
    description.write_text(
        "format: arrays\nfile: xy.npz\ndiffraction: data\npositions_x: x\npositions_y: y\n"
        f"probe: probe\npositions_units: m\npixel_size_m: {pixel}\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scan = read_scan(description)
    offset = scan.positions[0] - small_scan.positions[0]
    np.testing.assert_allclose(scan.positions - offset, small_scan.positions, atol=1e-6)
    assert scan.pixel_size_m() == pytest.approx(pixel)


def test_separate_x_and_y_keys_ignore_the_pair_order(tmp_path, small_scan):
    path = tmp_path / "xy.npz"
    np.savez(path, data=small_scan.diffraction, x=small_scan.positions[:, 1], y=small_scan.positions[:, 0],
             pairs=small_scan.positions[:, ::-1], probe=small_scan.probe)  # fmt: skip
    for order in ("yx", "xy"):
        layout = ArrayLayout(file=str(path), diffraction="data", positions_x="x", positions_y="y",
                             positions_order=order, zero_frequency="centre")  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scan = read_arrays(layout)
        offset = scan.positions[0] - small_scan.positions[0]
        np.testing.assert_allclose(scan.positions - offset, small_scan.positions, atol=1e-9)
    pairs = ArrayLayout(file=str(path), diffraction="data", positions="pairs", positions_order="xy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scan = read_arrays(pairs)
    np.testing.assert_allclose(scan.positions - (scan.positions[0] - small_scan.positions[0]),
                               small_scan.positions, atol=1e-9)  # fmt: skip


def test_a_declared_zero_frequency_that_contradicts_the_data_is_refused(tmp_path, small_scan):
    path = tmp_path / "scan.npz"
    _write_tike_style(path, small_scan)
    layout = ArrayLayout(file=str(path), diffraction="data", positions="scan", zero_frequency="centre")
    with pytest.raises(ScanValidationError, match="declared centre.*at the corner"):
        read_arrays(layout)


def test_bad_descriptions_are_clear_errors(tmp_path, small_scan):
    path = tmp_path / "scan.npz"
    _write_tike_style(path, small_scan)
    with pytest.raises(ScanValidationError, match="no such key; the file holds"):
        read_arrays(ArrayLayout(file=str(path), diffraction="patterns", positions="scan"))
    description = tmp_path / "bad.yaml"
    description.write_text(
        "format: arrays\nfile: scan.npz\ndiffraction: data\npositions: scan\ncolour: red\n"
    )
    with pytest.raises(Exception, match="unknown key.*colour"):
        read_scan(description)
    with pytest.raises(ValueError, match="pixel_size_m"):
        ArrayLayout(file="x.npz", diffraction="d", positions="p", positions_units="m")


def test_invalid_pixels_are_masked_and_left_out_of_the_fit(tmp_path, small_scan):
    path = tmp_path / "gap.npz"
    _write_tike_style(path, small_scan, gap=True)
    layout = ArrayLayout(file=str(path), diffraction="data", positions="scan", probe="probe",
                         positions_reference="corner")  # fmt: skip
    with pytest.warns(UserWarning, match="1 detector pixel"):
        scan = read_arrays(layout)
    assert scan.mask is not None and int((~scan.mask).sum()) == 1
    assert np.isfinite(scan.diffraction).all()
    config = RefinementConfig(epochs=3)
    garbage = scan.diffraction.copy()
    garbage[:, ~scan.mask] = 1e6
    first = refine_object(scan.diffraction, scan.positions, scan.probe, mask=scan.mask, config=config)
    second = refine_object(garbage, scan.positions, scan.probe, mask=scan.mask, config=config)
    np.testing.assert_allclose(first.object, second.object, atol=1e-5)


# -- the probe ---------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["preconditioned", "lbfgs"])
def test_a_probe_in_any_scale_gives_the_same_result(small_scan, optimizer):
    config = RefinementConfig(epochs=4, optimizer=optimizer)
    results = [
        refine_object(small_scan.diffraction, small_scan.positions, small_scan.probe * scale, config=config)
        for scale in (1.0, 1e-4, 300.0)
    ]
    assert results[1].probe_scale == pytest.approx(results[0].probe_scale * 1e4, rel=1e-4)
    scores = [compare_to_truth(r.object, small_scan.object, r.illumination).phase.ssim for r in results]
    for other, score in zip(results[1:], scores[1:], strict=True):
        if optimizer == "preconditioned":  # the same updates, to float rounding
            np.testing.assert_allclose(other.object, results[0].object, rtol=1e-3, atol=1e-3)
        # L-BFGS's line search turns float rounding into other (equally good) early iterates:
        # a probe scaled by 1 + 1e-7 moves its object as much as one scaled by 1e-4
        assert score == pytest.approx(scores[0], abs=0.01)
        assert other.loss_history[-1] == pytest.approx(results[0].loss_history[-1], rel=0.1)


def test_added_modes_are_orthogonal_and_keep_the_power_and_intensities(small_scan):
    probe = torch.from_numpy(small_scan.probe)
    grown = add_probe_modes(probe, 4, fraction=0.2)
    flat = grown.reshape(4, -1)
    gram = (flat.conj() @ flat.T).abs()
    assert torch.allclose(
        gram - torch.diag(torch.diagonal(gram)), torch.zeros(4, 4), atol=1e-3 * float(gram.max())
    )
    assert float((grown.abs() ** 2).sum()) == pytest.approx(float((probe.abs() ** 2).sum()), rel=1e-5)
    # re-orthogonalising a non-orthogonal stack keeps every diffraction intensity
    mixed = torch.stack([grown[0] + 0.5 * grown[1], grown[1] - 0.2 * grown[2], grown[2], grown[3]])
    patches = torch.exp(1j * torch.rand(3, *probe.shape)).to(torch.complex64)
    before = diffraction_intensity(patches, mixed)
    after = diffraction_intensity(patches, orthogonalize_modes(mixed))
    assert torch.allclose(before, after, rtol=1e-3, atol=1e-3 * float(before.max()))


def test_refined_modes_stay_orthogonal_and_hold_the_calibrated_power(small_scan):
    config = RefinementConfig(epochs=4, refine_probe=True, probe_modes=3, probe_start_epoch=0)
    result = refine_object(small_scan.diffraction, small_scan.positions, small_scan.probe * 50, config=config)
    flat = result.probe.reshape(3, -1)
    gram = np.abs(flat.conj() @ flat.T)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-3 * gram.max()
    power = float((np.abs(result.probe) ** 2).sum())
    calibrated = float((np.abs(small_scan.probe) ** 2).sum()) * (50 * result.probe_scale) ** 2
    assert power == pytest.approx(calibrated, rel=1e-3)


# -- the solver --------------------------------------------------------------------------------
def test_the_preconditioned_solver_recovers_a_known_object(small_scan):
    config = RefinementConfig(optimizer="preconditioned", epochs=60)
    result = refine_object(small_scan.diffraction, small_scan.positions, small_scan.probe, config=config)
    assert result.loss_history[-1] < 1e-2 * result.loss_history[0]
    comparison = compare_to_truth(result.object, small_scan.object, result.illumination)
    assert comparison.phase.ssim > 0.95


@pytest.mark.parametrize("optimizer", ["preconditioned", "lbfgs", "adam"])
def test_the_budget_holds_inside_epochs(optimizer):
    scan = simulate_scan(SimulationConfig(pattern_size=32, n_positions=256, step_px=3.0, seed=2))
    budget = 3.0
    started = time.perf_counter()
    config = RefinementConfig(optimizer=optimizer, time_budget_s=budget, epochs=10_000)
    result = refine_object(scan.diffraction, scan.positions, scan.probe, config=config)
    assert result.stop_reason == "time budget"
    # the whole call (set-up and result included) overruns by at most one minibatch or evaluation
    assert time.perf_counter() - started < budget * 1.1 + 0.3


@needs_real_scan
def test_blind_refinement_on_a_crop_of_the_real_scan(real_scan):
    # 120 neighbouring positions around the star's centre, from the file's probe guess as given
    centre = np.median(real_scan.positions, axis=0)
    nearest = np.argsort(np.linalg.norm(real_scan.positions - centre, axis=1))[:120]
    counts = real_scan.diffraction[nearest]
    positions = real_scan.positions[nearest] - real_scan.positions[nearest].min(axis=0) + 64
    config = RefinementConfig(epochs=6, refine_probe=True, probe_modes=2)
    result = refine_object(counts, positions, real_scan.probe, config=config)
    assert result.probe_scale == pytest.approx(94.3, rel=0.02)  # the guess holds 1e-4 of the counts
    assert result.loss_history[-1] < 0.2 * result.loss_history[0]
    phase = np.angle(result.object[result.illumination > 0.5 * result.illumination.max()])
    assert np.std(phase) > 0.1  # a structured object, not the flat start


def test_reconstruct_takes_a_description_and_the_new_flags_reach_the_refinement(tmp_path, small_scan, capsys):
    from ptychopinn.cli.main import main

    _write_tike_style(tmp_path / "scan.npz", small_scan)
    description = tmp_path / "scan.yaml"
    description.write_text(
        "format: arrays\nfile: scan.npz\ndiffraction: data\npositions: scan\nprobe: probe\n"
        "zero_frequency: corner\npositions_reference: corner\n"
    )
    out = tmp_path / "rec"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main([
            "reconstruct", str(description), "--output-dir", str(out), "--epochs", "3", "--refine-probe",
            "--probe-modes", "2", "--probe-support-radius", "12", "--refine-background", "--half-scan-frc",
            "--no-progress", "--accelerator", "cpu",
        ])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "reconstruct.json").read_text())
    refinement = summary["refinement"]
    assert refinement["optimizer"] == "preconditioned" and refinement["loss"] == "gaussian"
    assert refinement["probe_modes"] == 2 and refinement["probe_support_radius_px"] == 12
    assert refinement["refine_background"] and refinement["calibrate_probe"]
    power = float((np.abs(small_scan.probe * 3e-3) ** 2).sum())
    expected = np.sqrt(small_scan.diffraction.sum(axis=(1, 2)).mean() / power)  # a unit object's counts
    assert summary["probe_calibration_factor"] == pytest.approx(expected, rel=0.01)  # from 64 positions
    assert summary["half_scan_frc"]["phase"]["resolution_px"] >= 1.0
    with np.load(out / "reconstruction.npz", allow_pickle=False) as arrays:
        probe = arrays["probe"]
        assert probe.shape == (2, 32, 32) and arrays["background"].shape == (32, 32)
    axis = np.arange(32) - 16
    outside = (axis[:, None] ** 2 + axis[None, :] ** 2) > 12**2
    assert np.abs(probe[:, outside]).max() < 1e-6 * np.abs(probe).max() + 1e-12
    assert (out / "frc.png").is_file()
    printed = capsys.readouterr().out
    assert "probe calibrated to the measured counts" in printed and "half-scan FRC" in printed


def test_the_preconditioned_batch_grows_for_dim_scans():
    from ptychopinn.refine.solvers import PreconditionedSolver

    bright = torch.full((500, 8, 8), 1e6 / 64)
    dim = torch.full((500, 8, 8), 1e4 / 64)
    assert PreconditionedSolver.batch_size_for(bright) == 32
    assert PreconditionedSolver.batch_size_for(dim) == 500  # the whole scan
    assert PreconditionedSolver.batch_size_for(torch.full((5000, 8, 8), 1e5 / 64)) == 140


def test_the_preconditioned_solver_corrects_positions_from_a_flat_start():
    scan = simulate_scan(SimulationConfig(pattern_size=16, n_positions=64, step_px=3.0, object_kind="grf",
                                          photons_per_pattern=1e6, seed=1, noise=False))  # fmt: skip
    error = np.random.default_rng(0).uniform(-1.0, 1.0, size=scan.positions.shape)
    error -= error.mean(axis=0)  # a common shift is the object's
    config = RefinementConfig(
        optimizer="preconditioned", correct_positions=True, positions_start_epoch=5, epochs=60
    )
    result = refine_object(scan.diffraction, scan.positions + error, scan.probe, config=config)
    assert np.abs(result.positions - scan.positions).mean() < 0.5 * np.abs(error).mean()


# -- bad input, and the options that reach the code ------------------------------------------
def test_corrupt_array_files_are_clear_errors_and_nothing_is_written(tmp_path, capsys):
    from ptychopinn.cli.main import main
    from ptychopinn.io import ScanFileError

    (tmp_path / "scan.npz.bz2").write_bytes(b"not bzip2 at all")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 truncated")
    for name in ("scan.npz.bz2", "cut.npz"):
        with pytest.raises(ScanFileError, match=f"{name}: cannot be read as npz"):
            read_arrays(ArrayLayout(file=str(tmp_path / name), diffraction="data", positions="scan"))
    description = tmp_path / "scan.yaml"
    description.write_text("format: arrays\nfile: scan.npz.bz2\ndiffraction: data\npositions: scan\n")
    out = tmp_path / "rec"
    assert main(["reconstruct", str(description), "--output-dir", str(out), "--no-progress"]) == 2
    assert "cannot be read as npz" in capsys.readouterr().err
    assert not out.exists()


def test_no_probe_calibration_reaches_the_refinement(tmp_path, small_scan):
    from ptychopinn.cli.main import main
    from ptychopinn.io import write_scan

    data = tmp_path / "scan.npz"
    write_scan(small_scan.replace(probe=small_scan.probe * 7), data)
    out = tmp_path / "rec"
    args = ["reconstruct", str(data), "--output-dir", str(out), "--epochs", "1", "--no-progress",
            "--no-pretrained", "--no-probe-calibration", "--optimizer", "preconditioned",
            "--loss", "poisson"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "reconstruct.json").read_text())
    assert summary["refinement"]["calibrate_probe"] is False and summary["probe_calibration_factor"] == 1.0
    assert (
        summary["refinement"]["optimizer"] == "preconditioned" and summary["refinement"]["loss"] == "poisson"
    )


def test_a_linear_phase_ramp_is_found_and_moving_it_to_the_probe_changes_no_intensity(small_scan):
    from ptychopinn.physics import extract_patches
    from ptychopinn.refine import linear_phase_ramp, remove_phase_ramp

    obj = torch.from_numpy(small_scan.object)
    rows, cols = torch.meshgrid(torch.arange(obj.shape[0]), torch.arange(obj.shape[1]), indexing="ij")
    ramped = obj * torch.polar(torch.ones(obj.shape), 0.03 * rows - 0.05 * cols)
    ky, kx = linear_phase_ramp(ramped, torch.ones(obj.shape))
    assert ky == pytest.approx(0.03 + linear_phase_ramp(obj, torch.ones(obj.shape))[0], abs=2e-3)
    assert kx == pytest.approx(-0.05 + linear_phase_ramp(obj, torch.ones(obj.shape))[1], abs=2e-3)
    probe = torch.from_numpy(small_scan.probe)
    flat_obj, ramped_probe = remove_phase_ramp(ramped, probe, (ky, kx))
    positions = torch.from_numpy(np.round(small_scan.positions))[None]  # the identity holds on the grid
    before = diffraction_intensity(extract_patches(ramped[None], positions, 32)[0], probe)
    after = diffraction_intensity(extract_patches(flat_obj[None], positions, 32)[0], ramped_probe)
    assert torch.allclose(before, after, rtol=1e-3, atol=1e-3 * float(before.max()))


@pytest.mark.parametrize("optimizer", ["preconditioned", "lbfgs"])
def test_an_added_background_is_recovered(small_scan, optimizer):
    counts = small_scan.diffraction + 4.0
    config = RefinementConfig(optimizer=optimizer, epochs=30, refine_background=True, calibrate_probe=False,
                              probe_start_epoch=0, loss="gaussian")  # fmt: skip
    result = refine_object(counts, small_scan.positions, small_scan.probe, small_scan.object, config=config)
    assert result.background is not None and result.background.shape == (32, 32)
    assert float(np.median(result.background)) == pytest.approx(4.0, abs=1.0)


def test_data_fidelity_sits_at_its_noise_floor_for_the_true_model(small_scan):
    from ptychopinn.workflows.evaluation import data_fidelity

    rng = np.random.default_rng(0)
    counts = rng.poisson(small_scan.diffraction + 3.0).astype(np.float32)
    args = (small_scan.object, small_scan.probe, small_scan.positions, counts)
    with_background = data_fidelity(*args, background=np.full((32, 32), 3.0, np.float32))
    without = data_fidelity(*args)
    assert with_background["poisson_deviance"] == pytest.approx(
        with_background["poisson_deviance_noise_floor"], rel=0.05
    )
    assert without["poisson_deviance"] > 1.5 * with_background["poisson_deviance"]


def test_evaluate_reconstructs_the_halves_with_the_options_reconstruct_used(tmp_path, small_scan):
    from ptychopinn.cli.main import main
    from ptychopinn.io import write_scan
    from ptychopinn.workflows.evaluation import _refinement_of

    data = tmp_path / "scan.npz"
    write_scan(small_scan, data)
    out = tmp_path / "rec"
    assert main(["reconstruct", str(data), "--output-dir", str(out), "--epochs", "2", "--refine-probe",
                 "--probe-modes", "2", "--no-progress", "--no-pretrained"]) == 0  # fmt: skip
    options = _refinement_of(out / "reconstruction.npz")
    assert options is not None and options.refine_probe and options.probe_modes == 2
    assert options.optimizer == "preconditioned"
    assert _refinement_of(tmp_path / "nowhere" / "reconstruction.npz") is None
