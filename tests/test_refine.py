"""Physics refinement: recovers known objects, probes and positions; honours its budget."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import yaml

from ptychopinn.cli.main import main
from ptychopinn.evaluation import compare_objects
from ptychopinn.io import write_scan
from ptychopinn.physics import diffraction_intensity, extract_patches, poisson_deviance, poisson_nll
from ptychopinn.refine import RefinementConfig, refine_object, total_variation
from ptychopinn.simulate import SimulationConfig, simulate_scan

SMALL = SimulationConfig(
    pattern_size=16, n_positions=64, step_px=3.0, object_kind="grf", photons_per_pattern=1e6, seed=1
)


@pytest.fixture(scope="module")
def clean_scan():
    return simulate_scan(SMALL.replace(noise=False))


def probe_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Relative error after the best complex scale (the probe's global phase is free)."""
    estimate, truth = estimate.reshape(-1), truth.reshape(-1)
    scale = np.vdot(estimate, truth) / np.vdot(estimate, estimate)
    return float(np.linalg.norm(scale * estimate - truth) / np.linalg.norm(truth))


def test_deviance_is_the_nll_shifted_to_zero_at_a_perfect_fit():
    counts = torch.tensor([[0.0, 4.0], [9.0, 100.0]])
    lam = torch.tensor([[0.5, 3.0], [12.0, 90.0]], requires_grad=True)
    assert float(poisson_deviance(counts, counts)) == pytest.approx(0.0, abs=1e-6)
    shift = poisson_nll(lam, counts) - poisson_deviance(lam, counts)
    other = torch.tensor([[2.0, 5.0], [7.0, 120.0]])
    assert float(shift) == pytest.approx(
        float(poisson_nll(other, counts) - poisson_deviance(other, counts)), rel=1e-5
    )
    g1 = torch.autograd.grad(poisson_nll(lam, counts), lam)[0]
    g2 = torch.autograd.grad(poisson_deviance(lam, counts), lam)[0]
    assert torch.allclose(g1, g2, atol=1e-6)


def test_recovers_a_known_object_from_its_own_noise_free_data(clean_scan):
    start = np.full(clean_scan.object.shape, 0.8, np.complex64)
    result = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        clean_scan.probe,
        start,
        config=RefinementConfig(epochs=100),
    )
    assert result.loss_history[-1] < 1e-3 * result.loss_history[0]
    well = result.illumination >= 0.5
    comparison = compare_objects(result.object, clean_scan.object, well, register=False)
    error = np.abs(comparison.aligned - comparison.reference)
    assert error.mean() < 2e-3 and error.max() < 1e-2
    assert comparison.phase.ssim > 0.999


def test_adam_and_amplitude_phase_parameterisation_also_descend(clean_scan):
    for config in (
        RefinementConfig(optimizer="adam", learning_rate=0.02, batch_size=16, epochs=15),
        RefinementConfig(parameterization="amplitude_phase", epochs=10),
        RefinementConfig(loss="amplitude_mae", epochs=10),
    ):
        result = refine_object(clean_scan.diffraction, clean_scan.positions, clean_scan.probe, config=config)
        assert result.loss_history[-1] < 0.5 * result.loss_history[0], config


def test_probe_refinement_lowers_the_loss_and_the_probe_error(clean_scan):
    truth = clean_scan.probe
    yy, xx = np.mgrid[:16, :16] - 8
    wrong = (truth * 0.8 * np.exp(0.02j * (yy**2 + xx**2))).astype(np.complex64)  # scaled, defocused
    common = dict(epochs=40, probe_start_epoch=0)
    fixed = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        wrong,
        clean_scan.object,
        config=RefinementConfig(**common),
    )
    refined = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        wrong,
        clean_scan.object,
        config=RefinementConfig(refine_probe=True, **common),
    )
    assert refined.loss_history[-1] < 0.5 * fixed.loss_history[-1]
    assert probe_error(refined.probe[0], truth) < 0.5 * probe_error(wrong, truth)


def test_probe_modes_can_be_added_and_refined(clean_scan):
    result = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        clean_scan.probe,
        clean_scan.object,
        config=RefinementConfig(refine_probe=True, probe_modes=2, epochs=3, probe_start_epoch=0),
    )
    assert result.probe.shape == (2, 16, 16)
    assert np.abs(result.probe[1]).sum() > 0


def test_position_correction_moves_perturbed_positions_back(clean_scan):
    rng = np.random.default_rng(0)
    error = rng.uniform(-1.0, 1.0, size=clean_scan.positions.shape)
    error -= error.mean(axis=0)  # a common shift belongs to the object, not the positions
    perturbed = clean_scan.positions + error
    result = refine_object(
        clean_scan.diffraction, perturbed, clean_scan.probe, clean_scan.object,
        config=RefinementConfig(correct_positions=True, positions_start_epoch=0, epochs=40,
                                optimizer="adam", learning_rate=1e-3, position_learning_rate=0.05,
                                batch_size=16),
    )  # fmt: skip
    before = np.abs(error).mean()
    after = np.abs(result.positions - clean_scan.positions).mean()
    assert after < 0.5 * before
    assert np.abs(result.positions - perturbed).max() <= RefinementConfig().max_position_shift_px + 1e-9


def test_time_budget_is_honoured(clean_scan):
    started = time.perf_counter()
    result = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        clean_scan.probe,
        config=RefinementConfig(epochs=100_000, time_budget_s=1.0),
    )
    elapsed = time.perf_counter() - started
    assert result.stop_reason == "time budget"
    assert 1.0 <= result.elapsed_s < 2.0 and elapsed < 3.0


def test_convergence_stops_early(clean_scan):
    result = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        clean_scan.probe,
        clean_scan.object,
        config=RefinementConfig(epochs=1000, convergence_tolerance=0.5, patience=2),
    )
    assert result.stop_reason == "converged" and result.epochs < 1000


def test_starting_from_a_prediction_uses_it(clean_scan):
    """A good starting object (a network's prediction stands for it here) starts lower."""
    from scipy import ndimage

    rough = ndimage.gaussian_filter(clean_scan.object.real, 1.0) + 1j * ndimage.gaussian_filter(
        clean_scan.object.imag, 1.0
    )
    config = RefinementConfig(epochs=1)
    from_prediction = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        clean_scan.probe,
        rough.astype(np.complex64),
        config=config,
    )
    from_constant = refine_object(
        clean_scan.diffraction,
        clean_scan.positions,
        clean_scan.probe,
        np.ones_like(clean_scan.object),
        config=config,
    )
    assert from_prediction.loss_history[0] < 0.5 * from_constant.loss_history[0]


def test_tv_prior_smooths_low_dose_reconstructions():
    noisy = simulate_scan(SMALL.replace(photons_per_pattern=1e2))
    plain = refine_object(noisy.diffraction, noisy.positions, noisy.probe, config=RefinementConfig(epochs=20))
    smooth = refine_object(
        noisy.diffraction, noisy.positions, noisy.probe, config=RefinementConfig(epochs=20, tv_weight=0.05)
    )
    well = plain.illumination >= 0.5
    tv = lambda obj: float(total_variation(torch.from_numpy(np.where(well, obj, 0))))  # noqa: E731
    assert tv(smooth.object) < tv(plain.object)


def test_refined_data_are_explained_by_the_forward_model(clean_scan):
    result = refine_object(
        clean_scan.diffraction, clean_scan.positions, clean_scan.probe, config=RefinementConfig(epochs=30)
    )
    patches = extract_patches(
        torch.from_numpy(result.object)[None], torch.from_numpy(result.positions)[None], 16
    )[0]
    predicted = diffraction_intensity(patches, torch.from_numpy(result.probe)).numpy()
    assert np.abs(predicted - clean_scan.diffraction).sum() < 0.05 * clean_scan.diffraction.sum()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("epochs", 0, ">= 1"),
        ("optimizer", "sgd", "one of"),
        ("learning_rate", -1.0, "> 0"),
        ("tv_weight", -0.1, ">= 0"),
        ("probe_modes", 2, "needs refine_probe"),
        ("time_budget_s", 0.0, "> 0"),
        ("parameterization", "polar", "one of"),
    ],
)
def test_bad_refinement_options_are_clear_errors(field, value, fragment):
    with pytest.raises(ValueError, match=fragment) as caught:
        RefinementConfig(**{field: value})
    assert f"refinement.{field}" in str(caught.value)


def test_reconstruct_cli_flags_reach_the_refinement(tmp_path, capsys):
    scan = simulate_scan(SMALL.replace(n_positions=36))
    data = tmp_path / "scan.npz"
    write_scan(scan, data)
    out = tmp_path / "rec"
    code = main(
        [
            "reconstruct",
            str(data),
            "--output-dir",
            str(out),
            "--epochs",
            "4",
            "--optimizer",
            "adam",
            "--learning-rate",
            "0.03",
            "--batch-size",
            "9",
            "--refine-probe",
            "--correct-positions",
            "--max-position-shift",
            "1.5",
            "--tv-weight",
            "0.01",
            "--seed",
            "5",
            "--accelerator",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads((out / "reconstruct.json").read_text())
    refinement = summary["refinement"]
    assert refinement["optimizer"] == "adam" and refinement["learning_rate"] == 0.03
    assert refinement["batch_size"] == 9 and refinement["refine_probe"] and refinement["correct_positions"]
    assert refinement["max_position_shift_px"] == 1.5 and refinement["tv_weight"] == 0.01
    assert refinement["seed"] == 5 and summary["epochs"] == 4 and summary["device"] == "cpu"
    with np.load(out / "reconstruction.npz", allow_pickle=False) as arrays:
        assert arrays["probe"].shape == (1, 16, 16)
        assert arrays["positions_refined"].shape == (36, 2)
        assert arrays["loss"].shape == (4,)
    for name in ("amplitude.png", "phase.png", "amplitude.tiff", "phase.tiff", "metrics.json", "loss.png"):
        assert (out / name).is_file()
    assert "phase against the ground truth: SSIM" in capsys.readouterr().out


def test_reconstruct_can_train_a_network_first(tmp_path):
    from ptychopinn.workflows import DeviceOptions, ReconstructOptions, reconstruct

    scan = simulate_scan(SMALL.replace(n_positions=36))
    data = tmp_path / "scan.npz"
    write_scan(scan, data)
    options = ReconstructOptions(
        train_first=True, train_time_budget_s=2.0, refinement=RefinementConfig(epochs=3),
        device=DeviceOptions(accelerator="cpu"), progress=False,
    )  # fmt: skip
    result = reconstruct(data, tmp_path / "rec", options, log=lambda m: None)
    assert result.start == "trained" and (tmp_path / "rec" / "training" / "model.zip").is_file()
    assert result.initial_comparison is not None and result.timings["training_s"] > 0
    with pytest.raises(ValueError, match="exclude each other"):
        ReconstructOptions(model=tmp_path / "rec" / "training" / "model.zip", train_first=True)


def test_embedded_api_takes_metres_and_returns_the_object_in_the_same_frame():
    from ptychopinn.workflows import DeviceOptions, ReconstructOptions
    from ptychopinn.workflows.embedded import reconstruct_arrays

    truth = simulate_scan(
        SimulationConfig(pattern_size=16, n_positions=36, step_px=3.0, object_kind="grf", seed=4)
    )
    dx = truth.pixel_size_m()
    x_m = 5e-6 + dx * truth.positions[:, 1]
    y_m = -2e-6 + dx * truth.positions[:, 0]
    bad = np.zeros((16, 16), bool)
    bad[2, 9] = True
    garbage = truth.get_patterns().copy()
    garbage[:, 2, 9] = 1e9  # a hot pixel: must be left out, not fitted
    steps = []
    config = RefinementConfig(epochs=6, seed=1)
    options = ReconstructOptions(refinement=config, device=DeviceOptions(accelerator="cpu"), progress=False)
    kwargs = dict(x_m=x_m, y_m=y_m, probe=truth.probe, pixel_size_m=dx, bad_pixels=bad, options=options)
    result = reconstruct_arrays(garbage, **kwargs, callback=steps.append)
    assert [s.epoch for s in steps] == list(range(6)) and len(result.losses) == 6
    clean = reconstruct_arrays(truth.get_patterns(), **kwargs)
    np.testing.assert_array_equal(result.object, clean.object)
    np.testing.assert_allclose(result.x_m, x_m, rtol=0, atol=1e-18)
    np.testing.assert_allclose(result.y_m, y_m, rtol=0, atol=1e-18)
    # every position maps into the scanned area, with ptychodus' centre convention
    height, width = result.object.shape
    cols = (result.x_m - result.center_m[0]) / dx + (width - 1) / 2
    rows = (result.y_m - result.center_m[1]) / dx + (height - 1) / 2
    assert result.coverage[np.rint(rows).astype(int), np.rint(cols).astype(int)].all()
    assert (result.object[~result.coverage] == 1).all()
    with pytest.raises(ValueError, match="one per pattern"):
        reconstruct_arrays(garbage, **{**kwargs, "x_m": x_m[:-1]})


def test_reconstruct_train_first_takes_training_options_from_the_command_line(tmp_path, capsys):
    from ptychopinn.cli.main import main

    scan = simulate_scan(SMALL.replace(n_positions=36))
    data = tmp_path / "scan.npz"
    write_scan(scan, data)
    config = tmp_path / "train.yaml"
    config.write_text("model: {width: 4, depth: 1, modes: 4}\nexecution: {batch_size: 8}\n")
    code = main(["reconstruct", str(data), "--output-dir", str(tmp_path / "rec"), "--train-first",
                 "--train-time-budget", "2", "--train-config", str(config), "--train-learning-rate", "0.004",
                 "--epochs", "2", "--accelerator", "cpu", "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    used = yaml.safe_load((tmp_path / "rec" / "training" / "config.yaml").read_text())
    assert used["execution"]["learning_rate"] == 0.004 and used["execution"]["batch_size"] == 8
    assert used["model"]["width"] == 4 and used["training"]["time_budget_s"] == 2.0


def test_the_preconditioned_solvers_momentum_flag_reaches_its_update():
    """--solver.momentum: parsed into the refinement's solver options, read by the solver, and
    changing what it computes (0: no momentum between epochs)."""
    from ptychopinn.cli.main import build_parser
    from ptychopinn.workflows import ReconstructOptions

    args = build_parser().parse_args(["reconstruct", "scan.npz", "--output-dir", "o", "--refine-probe",
                                      "--solver.momentum", "0", "--patience", "3"])  # fmt: skip
    options = ReconstructOptions.from_flags(vars(args))
    assert options.refinement.solver_options == {"momentum": 0.0} and options.refinement.patience == 3
    scan = simulate_scan(SimulationConfig(pattern_size=16, n_positions=25, step_px=3.0, seed=5))
    results = {}
    for momentum in (0.0, 0.7):
        config = RefinementConfig(refine_probe=True, epochs=4, seed=0, solver_options={"momentum": momentum})
        assert config.solver_settings().momentum == momentum
        results[momentum] = refine_object(scan.diffraction, scan.positions, scan.probe, config=config).object
    assert not np.allclose(results[0.0], results[0.7])
