"""Every registered forward model, checked against physics (tike's operator tests are the model).

A new file in ``src/ptychopinn/physics/forward_models/`` is picked up here with no edit: the
adjoint identity ``<A x, y> = <x, A^H y>``, power kept where the model says it is unitary, and
a known object recovered from its own simulated data by the refinement through the model.
Model-specific physics follows (the Fresnel scaling theorem, the far field's Fourier pairs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ptychopinn.io import Scan, ScanMetadata, write_scan
from ptychopinn.physics import extract_patches
from ptychopinn.physics.forward_models import FORWARD_MODELS, Geometry, NearField, build_forward_model
from ptychopinn.refine import RefinementConfig, refine_object

#: a hard X-ray near-field set-up scaled to a small array: Fresnel number about 0.5 per pixel,
#: so a pattern is a hologram of the patch, neither its image nor its far field
GEOMETRY = Geometry(wavelength_m=1e-10, pixel_size_m=50e-9)
OPTIONS = {"far_field": {}, "near_field": {"distance_m": 5e-5}}


def _options(name: str) -> dict:
    return OPTIONS.get(name, {})


def _model(name: str):
    return build_forward_model(name, _options(name), GEOMETRY)


@pytest.mark.parametrize("name", FORWARD_MODELS.names())
def test_every_model_has_a_registered_options_example_here(name):
    # a new model needs a line in OPTIONS only when its options have no defaults
    _model(name)


@pytest.mark.parametrize("name", FORWARD_MODELS.names())
def test_the_adjoint_is_the_adjoint(name):
    model = _model(name)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 24, 24, dtype=torch.complex128, generator=generator)
    y = torch.randn(3, 24, 24, dtype=torch.complex128, generator=generator)
    ax = model.propagate(x.to(torch.complex64)).to(torch.complex128)
    ahy = model.adjoint(y.to(torch.complex64)).to(torch.complex128)
    left, right = torch.vdot(ax.ravel(), y.ravel()), torch.vdot(x.ravel(), ahy.ravel())
    assert abs(left - right) <= 1e-5 * abs(left)


@pytest.mark.parametrize("name", FORWARD_MODELS.names())
def test_a_unitary_model_keeps_the_power_and_is_undone_by_its_adjoint(name):
    model = _model(name)
    if not model.unitary:
        pytest.skip(f"{name} does not keep the power")
    x = torch.randn(2, 16, 16, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    ax = model.propagate(x)
    torch.testing.assert_close(ax.abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-5, atol=0)
    torch.testing.assert_close(model.adjoint(ax), x, rtol=0, atol=1e-5)


def _known_object(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(3)
    smooth = np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) * np.exp(
        -(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None] ** 2) / 0.004
    )).real  # fmt: skip
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    return (np.exp(-0.3 * smooth) * np.exp(1j * (smooth - 0.5))).astype(np.complex64)


def _probe(size: int = 16) -> np.ndarray:
    c = np.arange(size) - size / 2
    r2 = c[:, None] ** 2 + c[None] ** 2
    return (np.exp(-r2 / (2 * 3.0**2)) * np.exp(1j * 0.05 * r2)).astype(np.complex64) * 30


@pytest.mark.parametrize("name", FORWARD_MODELS.names())
def test_a_known_object_is_recovered_from_its_own_data(name):
    truth, probe = _known_object(), _probe()
    grid = np.arange(8, 33, 4, dtype=np.float64)
    positions = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    model = _model(name)
    patches = extract_patches(torch.from_numpy(truth)[None], torch.from_numpy(positions)[None], 16)[0]
    counts = model.intensity(patches, torch.from_numpy(probe)).numpy()
    config = RefinementConfig(
        optimizer="lbfgs", epochs=60, calibrate_probe=False, forward_model=name,
        forward_model_options=_options(name),
    )  # fmt: skip
    result = refine_object(counts, positions, probe, np.ones_like(truth), config=config, geometry=GEOMETRY)
    inside = result.illumination > 0.5 * result.illumination.max()
    # the object up to its global phase, where it is well lit
    product = np.vdot(result.object[inside], truth[inside])
    aligned = result.object[inside] * product / abs(product)
    error = np.abs(aligned - truth[inside]).mean() / np.abs(truth[inside]).mean()
    assert error < 0.05, f"{name}: relative error {error:.3f} after {result.epochs} epochs"
    assert result.loss_history[-1] < 1e-2 * result.loss_history[0]


def test_near_field_needs_its_distance_and_the_geometry():
    with pytest.raises(ValueError, match="near_field.distance_m = None: must be given"):
        RefinementConfig(forward_model="near_field")
    model = build_forward_model("near_field", {"distance_m": 1e-3})
    with pytest.raises(ValueError, match="needs the wavelength"):
        model.propagate(torch.ones(8, 8, dtype=torch.complex64))


def test_the_fresnel_scaling_theorem_for_a_diverging_beam():
    # focus 3.65 mm upstream of the sample, detector 5 m downstream (P25's set-up)
    settings = NearField.options(distance_m=5.0, focus_to_sample_m=3.65e-3)
    magnification = (3.65e-3 + 5.0) / 3.65e-3
    assert settings.magnification == pytest.approx(magnification)
    assert settings.effective_distance_m == pytest.approx(3.65e-3 * 5.0 / (3.65e-3 + 5.0))
    pixel = NearField.object_pixel_size_m(settings, 1e-10, 5.0, 100, 6.5e-6)
    assert pixel == pytest.approx(6.5e-6 / magnification)
    described = build_forward_model("near_field", settings, GEOMETRY).describe()
    assert described["magnification"] == pytest.approx(magnification) and described["fresnel_number"] > 0


def test_near_field_of_a_point_spreads_as_fresnel_predicts():
    # a small distance: the propagated point keeps most power near the centre; a larger one
    # spreads it (the Fresnel zone grows as sqrt(lambda z))
    point = torch.zeros(64, 64, dtype=torch.complex64)
    point[32, 32] = 1
    near = build_forward_model("near_field", {"distance_m": 1e-5}, GEOMETRY).propagate(point).abs() ** 2
    far = build_forward_model("near_field", {"distance_m": 2e-4}, GEOMETRY).propagate(point).abs() ** 2
    centre = (slice(28, 37), slice(28, 37))
    assert near[centre].sum() > far[centre].sum()
    torch.testing.assert_close(near.sum(), far.sum(), rtol=1e-5, atol=0)


def test_reconstruct_runs_a_near_field_scan_and_records_the_model(tmp_path):
    from ptychopinn.cli.main import main

    truth, probe = _known_object(), _probe() * 10  # 7,500 counts a pixel: near-field phase contrast
    grid = np.arange(8, 33, 4, dtype=np.float64)  # is weak at low frequencies, so it needs dose
    positions = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    model = _model("near_field")
    patches = extract_patches(torch.from_numpy(truth)[None], torch.from_numpy(positions)[None], 16)[0]
    counts = np.random.default_rng(0).poisson(model.intensity(patches, torch.from_numpy(probe)).numpy())
    scan = Scan(
        diffraction=counts.astype(np.float32), positions=positions, probe=probe, object=truth,
        metadata=ScanMetadata(energy_ev=12398.4, object_pixel_size_m=50e-9),
    )  # fmt: skip
    write_scan(scan, tmp_path / "scan.npz")
    code = main(["reconstruct", str(tmp_path / "scan.npz"), "--output-dir", str(tmp_path / "out"),
                 "--forward-model", "near_field", "--forward-model.distance-m", "5e-5", "--epochs", "40",
                 "--optimizer", "lbfgs", "--no-pretrained", "--accelerator", "cpu", "--quiet"])  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "out" / "reconstruct.json").read_text())
    assert record["refinement"]["forward_model"] == "near_field"
    assert record["forward_model"]["distance_m"] == 5e-5 and record["forward_model"]["magnification"] == 1.0
    assert record["metrics"]["phase"]["pearson"] > 0.9


def test_a_simulated_near_field_scan_is_fitted_by_its_model_and_not_by_the_far_field(tmp_path, capsys):
    """simulate, reconstruct and evaluate all use the chosen model: its misfit reaches the noise
    floor; the far field, given the same holograms, cannot fit them."""
    from ptychopinn.cli.main import main
    from ptychopinn.io import read_scan

    scan_file = tmp_path / "hologram.npz"
    near = ["--forward-model", "near_field", "--forward-model.distance-m", "0.014"]
    assert main(["simulate", "-o", str(scan_file), "-N", "32", "--n-positions", "36", "--step", "4",
                 "--probe", "gaussian", "--object", "grf", "--detector-pixel-size", "1e-6",
                 "--photons", "1e7", "--seed", "2", *near]) == 0  # fmt: skip
    assert read_scan(scan_file).pixel_size_m() == pytest.approx(1e-6)  # the near field's pixel: p / M
    fits = {}
    for name, model in (("near", near), ("far", [])):
        out = tmp_path / name
        assert main(["reconstruct", str(scan_file), "--output-dir", str(out), *model, "--epochs", "60",
                     "--optimizer", "lbfgs", "--no-pretrained", "--accelerator", "cpu",
                     "--quiet"]) == 0  # fmt: skip
        assert main(["evaluate", "--reconstruction", str(out), "--data", str(scan_file),
                     "--output-dir", str(out / "eval")]) == 0  # fmt: skip
        fits[name] = json.loads((out / "eval" / "metrics.json").read_text())
    capsys.readouterr()
    assert fits["near"]["forward_model"]["name"] == "near_field"
    assert fits["far"]["forward_model"]["name"] == "far_field"
    near_fit, far_fit = fits["near"]["data_fidelity"], fits["far"]["data_fidelity"]
    # the refinement through its own model fits to the noise floor (measured: 0.161 vs 0.166)
    refined = json.loads((tmp_path / "near" / "reconstruct.json").read_text())
    assert refined["final_loss"] < 1.2 * near_fit["poisson_deviance_noise_floor"]
    assert refined["metrics"]["phase"]["pearson"] > 0.95  # measured 0.990
    # and evaluate, through the model recorded and on the whole refined canvas (the near field
    # mixes unlit pixels into lit ones), finds the same; the far field cannot fit at all (692)
    assert near_fit["poisson_deviance"] < 1.2 * near_fit["poisson_deviance_noise_floor"], near_fit
    assert far_fit["poisson_deviance"] > 100 * near_fit["poisson_deviance"], (near_fit, far_fit)


def test_the_network_trains_through_the_chosen_model_and_its_bundle_carries_it(tmp_path, capsys):
    """train's physics layer is the chosen model, with the geometry of the training scan; the
    bundle carries both, so the loaded network predicts counts through the same physics."""
    from ptychopinn.cli.main import main
    from ptychopinn.config import ModelConfig
    from ptychopinn.io import read_scan
    from ptychopinn.workflows import load_model_bundle

    scan_file = tmp_path / "hologram.npz"
    near = ["--forward-model", "near_field", "--forward-model.distance-m", "0.014"]
    assert main(["simulate", "-o", str(scan_file), "-N", "32", "--n-positions", "36", "--step", "4",
                 "--probe", "gaussian", "--object", "grf", "--detector-pixel-size", "1e-6",
                 "--photons", "1e6", "--seed", "3", *near]) == 0  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--train-data", str(scan_file), "--output-dir", str(run), *near, "--epochs", "1",
                 "--width", "4", "--depth", "1", "--modes", "4", "--batch-size", "8", "--logger", "none",
                 "--accelerator", "cpu", "--no-progress-bar"]) == 0  # fmt: skip
    capsys.readouterr()
    loaded = load_model_bundle(run / "model.zip")
    model = loaded.config.model
    assert model.forward_model == "near_field" and model.forward_model_options == {"distance_m": 0.014}
    scan = read_scan(scan_file)
    assert model.wavelength_m == pytest.approx(scan.metadata.wavelength_m)
    assert model.object_pixel_m == pytest.approx(1e-6)
    detector = loaded.module.net.forward_model.detector
    assert detector.name == "near_field" and detector.geometry.pixel_size_m == pytest.approx(1e-6)
    patches = torch.ones(1, 1, 32, 32, dtype=torch.complex64)
    probe = loaded.module.net.forward_model.probe
    expected = _model("near_field").__class__(detector.geometry, detector.settings).intensity(patches, probe)
    torch.testing.assert_close(loaded.module.net.forward_model(patches, torch.zeros(1, 1, 2))[1], expected)
    # combinations the physics does not allow are refused with the reason
    with pytest.raises(ValueError, match="unrolled generator's steps are far-field projections"):
        ModelConfig(generator="unrolled", forward_model="near_field",
                    forward_model_options={"distance_m": 1.0})  # fmt: skip
    code = main(["pretrain", "--probe", "gaussian", "--output-dir", str(tmp_path / "pre"), *near,
                 "--max-steps", "1"])  # fmt: skip
    assert code == 2 and "far field only" in capsys.readouterr().err


def test_a_far_field_network_does_not_start_a_near_field_refinement(tmp_path, capsys):
    from ptychopinn.cli.main import main
    from ptychopinn.simulate import SimulationConfig
    from ptychopinn.workflows import simulate_to_file
    from ptychopinn.workflows.pretrained import shipped_bundles

    scan_file = tmp_path / "scan.npz"
    simulate_to_file(SimulationConfig(n_positions=16, seed=1), scan_file, progress=False)  # the shipped probe
    near = ["--forward-model", "near_field", "--forward-model.distance-m", "0.5", "--epochs", "1", "--quiet"]
    (bundle,) = shipped_bundles()
    code = main(["reconstruct", str(scan_file), "--output-dir", str(tmp_path / "given"),
                 "--model", str(bundle), *near])  # fmt: skip
    assert code == 2 and "made for the far_field forward model" in capsys.readouterr().err
    # the shipped network matches the probe, but not the physics: a flat start instead
    assert main(["reconstruct", str(scan_file), "--output-dir", str(tmp_path / "auto"), *near]) == 0
    assert "(constant start)" in capsys.readouterr().out
