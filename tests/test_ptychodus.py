"""Interoperability with ptychodus 1.7, checked against ptychodus' own writers, readers and classes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ptychodus")

from ptychodus.api.assemble import AssembledDiffractionData  # noqa: E402
from ptychodus.api.geometry import PixelGeometry  # noqa: E402
from ptychodus.api.io import (  # noqa: E402
    load_product,
    save_diffraction_data,
    save_product,
    save_ptychopinn_training_data,
)
from ptychodus.api.object import Object, ObjectCenter  # noqa: E402
from ptychodus.api.probe import ProbeSequence  # noqa: E402
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence  # noqa: E402
from ptychodus.api.product import Product, ProductMetadata  # noqa: E402
from ptychodus.api.reconstruct import ReconstructInput, ReconstructOutput, TrainableReconstructor  # noqa: E402

from ptychopinn.cli.main import main  # noqa: E402
from ptychopinn.io import detect_format, read_scan  # noqa: E402
from ptychopinn.refine import RefinementConfig  # noqa: E402
from ptychopinn.simulate import SimulationConfig, simulate_scan  # noqa: E402
from ptychopinn.workflows import DeviceOptions, ReconstructOptions  # noqa: E402
from ptychopinn.workflows.embedded import reconstruct_arrays  # noqa: E402

N = 32
BAD = (3, 5)  # one bad detector pixel, holding garbage


@pytest.fixture(scope="module")
def truth():
    return simulate_scan(
        SimulationConfig(pattern_size=N, n_positions=40, step_px=4.0, object_kind="grf", seed=1)
    )


@pytest.fixture(scope="module")
def ptychodus_input(truth) -> ReconstructInput:
    """The simulated scan as ptychodus holds it: metres, an object centre, OPR probe axis."""
    dx = truth.pixel_size_m()
    height, width = truth.object.shape
    center = ObjectCenter(x_m=3e-6, y_m=-1e-6)
    x_m = center.x_m + dx * (truth.positions[:, 1] - (width - 1) / 2)
    y_m = center.y_m + dx * (truth.positions[:, 0] - (height - 1) / 2)
    indexes = np.arange(100, 100 + truth.n_patterns)  # not 0..n-1: pairing is by index
    patterns = truth.get_patterns().astype(np.uint32)
    patterns[:, BAD[0], BAD[1]] = 4_000_000_000
    bad = np.zeros((N, N), bool)
    bad[BAD] = True
    meta = truth.metadata
    product = Product(
        metadata=ProductMetadata(
            name="sim", comments="", detector_distance_m=meta.detector_distance_m,
            photon_energy_eV=meta.energy_ev, probe_photon_count=1e6, exposure_time_s=0.1,
            mass_attenuation_m2_per_kg=0.0, tomography_angle_deg=0.0,
        ),
        probe_positions=ProbePositionSequence(
            [ProbePosition(int(i), float(x), float(y)) for i, x, y in zip(indexes, x_m, y_m, strict=True)]
        ),
        probes=ProbeSequence(truth.probe_modes[None], None, PixelGeometry(dx, dx)),
        object_=Object(np.ones((1, height, width), complex), PixelGeometry(dx, dx), center),
        losses=[],
    )  # fmt: skip
    return ReconstructInput(patterns, bad, product)


def write_ptychodus_directory(parameters: ReconstructInput, directory, detector_pixel_m: float):
    directory.mkdir(exist_ok=True)
    data = AssembledDiffractionData(
        parameters.product.probe_positions.get_indexes(),
        parameters.diffraction_patterns,
        PixelGeometry(detector_pixel_m, detector_pixel_m),
        parameters.bad_pixels,
    )
    save_diffraction_data(directory / "diffraction.h5", data)
    save_product(directory / "product.h5", parameters.product)
    return directory


def expected_pixels(parameters: ReconstructInput) -> np.ndarray:
    geometry = parameters.product.object_.get_geometry()
    positions = parameters.product.probe_positions
    return np.stack(
        [
            geometry.map_probe_positions_to_object_y_px(positions),
            geometry.map_probe_positions_to_object_x_px(positions),
        ],
        axis=1,
    )


def test_a_ptychodus_directory_reads_with_its_positions_probe_and_counts(truth, ptychodus_input, tmp_path):
    directory = write_ptychodus_directory(
        ptychodus_input, tmp_path / "scan", truth.metadata.detector_pixel_size_m
    )
    for path in (directory, directory / "product.h5", directory / "diffraction.h5"):
        assert detect_format(path) == "ptychodus"
    scan = read_scan(directory)
    assert scan.is_lazy
    # positions: ptychodus' own mapping to object pixels (its object centre at (W-1)/2, (H-1)/2)
    np.testing.assert_allclose(scan.positions, expected_pixels(ptychodus_input), atol=1e-9)
    np.testing.assert_allclose(scan.positions, truth.positions, atol=1e-9)
    np.testing.assert_array_equal(scan.probe_modes, truth.probe_modes)
    good = np.ones((N, N), bool)
    good[BAD] = False
    np.testing.assert_array_equal(scan.mask, good)
    counts = scan.get_patterns()
    np.testing.assert_array_equal(counts[:, good], truth.get_patterns()[:, good])
    assert (counts[:, BAD[0], BAD[1]] == 0).all()  # the garbage is not served
    np.testing.assert_array_equal(scan.scan_index, ptychodus_input.product.probe_positions.get_indexes())
    assert scan.pixel_size_m() == pytest.approx(truth.pixel_size_m(), rel=1e-12)
    assert scan.metadata.energy_ev == truth.metadata.energy_ev
    assert scan.object is None  # ptychodus' object is an estimate, not a ground truth


def test_patterns_and_positions_are_paired_by_scan_index(truth, ptychodus_input, tmp_path):
    directory = write_ptychodus_directory(
        ptychodus_input, tmp_path / "scan", truth.metadata.detector_pixel_size_m
    )
    # drop the product's first three positions and shuffle the rest: pairing follows the indexes
    product = ptychodus_input.product
    points = list(product.probe_positions)[3:]
    order = np.random.default_rng(0).permutation(len(points))
    shuffled = ProbePositionSequence([points[k] for k in order])
    save_product(
        directory / "product.h5",
        Product(product.metadata, shuffled, product.probes, product.object_, product.losses),
    )
    scan = read_scan(directory)
    assert scan.n_patterns == truth.n_patterns - 3
    rows = np.array([points[k].index for k in order]) - 100
    np.testing.assert_allclose(scan.positions, truth.positions[rows], atol=1e-9)
    good = np.ones((N, N), bool)
    good[BAD] = False
    np.testing.assert_array_equal(scan.get_patterns()[:, good], truth.get_patterns()[rows][:, good])


def test_the_ptychopinn_export_of_ptychodus_is_read_as_counts(truth, ptychodus_input, tmp_path, caplog):
    path = tmp_path / "export.npz"
    save_ptychopinn_training_data(path, ptychodus_input, inpaint_bad_pixels=False)
    with caplog.at_level("INFO", logger="ptychopinn"):
        scan = read_scan(path)
    assert "holds photon counts" in caplog.text  # the log says what was found
    good = np.ones((N, N), bool)
    good[BAD] = False
    np.testing.assert_array_equal(scan.get_patterns()[:, good], truth.get_patterns()[:, good])
    np.testing.assert_allclose(scan.positions, expected_pixels(ptychodus_input), atol=1e-9)
    np.testing.assert_array_equal(scan.probe_modes, truth.probe_modes)  # its probe is a mode stack
    np.testing.assert_array_equal(scan.mask, good)
    # inpainted bad pixels (ptychodus' default) hold non-integers: still counts, pixel masked
    save_ptychopinn_training_data(tmp_path / "inpainted.npz", ptychodus_input)
    inpainted = read_scan(tmp_path / "inpainted.npz")
    np.testing.assert_array_equal(inpainted.get_patterns()[:, good], truth.get_patterns()[:, good])


def test_reconstruct_a_ptychodus_scan_and_ptychodus_opens_the_product(
    truth, ptychodus_input, tmp_path, capsys
):
    directory = write_ptychodus_directory(
        ptychodus_input, tmp_path / "scan", truth.metadata.detector_pixel_size_m
    )
    out = tmp_path / "out"
    code = main(["reconstruct", str(directory), "--output-dir", str(out), "--epochs", "5",
                 "--ptychodus-product", "--no-progress", "--accelerator", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    product = load_product(out / "product.h5")
    ours = np.load(out / "reconstruction.npz")
    # ptychodus sees our object and our positions, in the metres they came in
    np.testing.assert_array_equal(
        product.object_.get_array()[0][ours["coverage"]], ours["object"][ours["coverage"]]
    )
    np.testing.assert_allclose(
        product.probe_positions.get_coordinates_x_m(),
        ptychodus_input.product.probe_positions.get_coordinates_x_m(),
        rtol=0,
        atol=1e-15,
    )
    np.testing.assert_array_equal(
        product.probe_positions.get_indexes(), ptychodus_input.product.probe_positions.get_indexes()
    )
    geometry = product.object_.get_geometry()
    np.testing.assert_allclose(
        geometry.map_probe_positions_to_object_x_px(product.probe_positions),
        ours["positions"][:, 1],
        atol=1e-9,
    )
    assert product.probes.get_array().shape == (1, 1, N, N)
    assert len(product.losses) == 5
    assert product.metadata.photon_energy_eV == truth.metadata.energy_ev


def test_the_adapter_returns_what_our_own_api_returns(ptychodus_input):
    from ptychopinn.integrations.ptychodus import (
        PtychoPINNLibrary,
        PtychoPINNReconstructor,
        arrays_from_input,
    )

    refinement = RefinementConfig(epochs=4, seed=2)
    reconstructor = PtychoPINNReconstructor(refinement=refinement, accelerator="cpu")
    assert isinstance(reconstructor, TrainableReconstructor)
    assert any(isinstance(r, PtychoPINNReconstructor) for r in PtychoPINNLibrary())
    (output,) = list(reconstructor.reconstruct(ptychodus_input))
    assert isinstance(output, ReconstructOutput)
    cpu = DeviceOptions(accelerator="cpu")
    options = ReconstructOptions(refinement=refinement, device=cpu, progress=False)
    ours = reconstruct_arrays(**arrays_from_input(ptychodus_input), options=options)
    product = output.product
    np.testing.assert_array_equal(product.object_.get_array()[0], ours.object)
    center = product.object_.get_center()
    assert (center.x_m, center.y_m) == ours.center_m
    assert product.object_.get_pixel_geometry().width_m == ours.pixel_size_m
    np.testing.assert_array_equal(product.probe_positions.get_coordinates_x_m(), ours.x_m)
    assert [loss.value for loss in product.losses] == ours.losses
    # the object is where ptychodus expects it: positions map into the scanned area
    geometry = product.object_.get_geometry()
    xs = geometry.map_probe_positions_to_object_x_px(product.probe_positions)
    ys = geometry.map_probe_positions_to_object_y_px(product.probe_positions)
    coverage = ours.coverage
    assert coverage[np.rint(ys).astype(int), np.rint(xs).astype(int)].all()


def test_the_adapter_trains_saves_and_loads_a_model(ptychodus_input, tmp_path):
    from ptychopinn.integrations.ptychodus import PtychoPINNReconstructor

    reconstructor = PtychoPINNReconstructor(
        refinement=RefinementConfig(epochs=2), accelerator="cpu", train_epochs=2
    )
    assert not reconstructor.is_model_loaded()
    reconstructor.export_training_data(tmp_path / "data" / "train.npz", ptychodus_input)
    (result,) = list(reconstructor.train(tmp_path / "data", tmp_path / "model"))
    assert result.progress == 2 and len(result.training_loss) == 2
    assert reconstructor.is_model_loaded()
    reconstructor.save_model(tmp_path / "saved.zip")
    fresh = PtychoPINNReconstructor(refinement=RefinementConfig(epochs=2), accelerator="cpu")
    fresh.load_model_from_file(tmp_path / "saved.zip")
    (output,) = list(fresh.reconstruct(ptychodus_input))
    assert np.isfinite(output.product.object_.get_array()).all()


def test_train_and_infer_take_a_ptychodus_directory(truth, ptychodus_input, tmp_path, capsys):
    directory = write_ptychodus_directory(
        ptychodus_input, tmp_path / "scan", truth.metadata.detector_pixel_size_m
    )
    tiny = ["--width", "4", "--depth", "1", "--modes", "4", "--accelerator", "cpu"]
    assert main(["train", "--train-data", str(directory), "--output-dir", str(tmp_path / "run"),
                 "--epochs", "1", "--logger", "none", "--no-progress-bar", *tiny]) == 0  # fmt: skip
    assert main(["infer", "--model", str(tmp_path / "run" / "model.zip"), "--data", str(directory),
                 "--output-dir", str(tmp_path / "inferred"), "--ptychodus-product", "--no-progress",
                 "--accelerator", "cpu"]) == 0  # fmt: skip
    product = load_product(tmp_path / "inferred" / "product.h5")
    np.testing.assert_allclose(
        product.probe_positions.get_coordinates_y_m(),
        ptychodus_input.product.probe_positions.get_coordinates_y_m(),
        rtol=0,
        atol=1e-15,
    )


def test_a_product_without_geometry_is_refused_before_any_work(truth, tmp_path, capsys):
    path = tmp_path / "bare.npz"  # counts and positions, no energy or distance
    np.savez(path, diffraction=np.sqrt(truth.get_patterns()), probeGuess=truth.probe,
             xcoords=truth.positions[:, 1], ycoords=truth.positions[:, 0])  # fmt: skip
    out = tmp_path / "out"
    code = main(["reconstruct", str(path), "--output-dir", str(out), "--epochs", "1", "--ptychodus-product",
                 "--no-progress", "--accelerator", "cpu"])  # fmt: skip
    assert code == 2
    assert "photon energy" in capsys.readouterr().err
    assert not (out / "reconstruction.npz").exists() and not (out / "product.h5").exists()
