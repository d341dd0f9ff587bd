"""Values judged on load (issue 15, finding 7): no silent garbage, each case refused or fixed.

Legacy cubes that fit two layouts, detector markers taken as counts, geometry in the wrong
unit, centred positions dropping patterns, ptychodus indexes cast silently, configuration
files that explode.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from conftest import write_ptychodus_folder
from ptychopinn.cli.main import main
from ptychopinn.io import ScanFileError, ScanValidationError, read_scan, write_scan
from ptychopinn.io.npz import read_npz
from ptychopinn.io.scan import DEAD_PIXEL_VALUE
from ptychopinn.simulate import SimulationConfig, simulate_scan

READ_ERRORS = (ScanFileError, ScanValidationError)


@pytest.fixture(scope="module")
def cube_scan():
    """16 patterns of 16 x 16: a stack that fits (n, N, N) and (N, N, n) alike."""
    return simulate_scan(SimulationConfig(pattern_size=16, n_positions=16, step_px=3.0, seed=5))


def write_legacy(path, scan, amplitudes):
    np.savez(path, diff3d=amplitudes, probeGuess=scan.probe, xcoords=scan.positions[:, 1],
             ycoords=scan.positions[:, 0])  # fmt: skip


def test_a_legacy_cube_is_refused_until_its_pattern_axis_is_given(cube_scan, tmp_path):
    amplitudes = np.sqrt(cube_scan.get_patterns())
    path = tmp_path / "legacy.npz"
    write_legacy(path, cube_scan, np.moveaxis(amplitudes, 0, 2))  # (N, N, n) with n == N
    with pytest.raises(ScanValidationError, match="fits both .* pattern_axis"):
        read_scan(path)
    last = read_npz(path, pattern_axis="last")
    np.testing.assert_allclose(last.get_patterns(), cube_scan.get_patterns(), rtol=1e-5)
    wrong = tmp_path / "wrong.npz"
    write_legacy(wrong, cube_scan, amplitudes)  # (n, N, N) said to be (N, N, n): refused
    with pytest.raises(ScanValidationError, match=r"matches not \(N, N, n\)"):
        read_npz(_write(tmp_path / "short.npz", cube_scan, amplitudes[:15]), pattern_axis="last")
    description = tmp_path / "legacy.yaml"
    description.write_text(
        "format: arrays\nfile: legacy.npz\ndiffraction: diff3d\npositions_x: xcoords\n"
        "positions_y: ycoords\nprobe: probeGuess\nvalues: amplitude\npattern_axis: last\n"
    )
    np.testing.assert_allclose(read_scan(description).get_patterns(), cube_scan.get_patterns(), rtol=1e-5)
    ours = tmp_path / "ours.npz"
    write_scan(cube_scan, ours)  # our own cubes carry _metadata: (n, N, N) without asking
    np.testing.assert_allclose(read_scan(ours).get_patterns(), cube_scan.get_patterns(), rtol=1e-5)


def _write(path, scan, amplitudes):
    write_legacy(path, scan, amplitudes)
    return path


@pytest.mark.parametrize("marker", [DEAD_PIXEL_VALUE, 2**32 + 5, 2**16 - 1])
@pytest.mark.parametrize("fmt", ["cxi", "ptychodus", "npz", "arrays"])
def test_detector_markers_are_masked_and_reported(cube_scan, tmp_path, fmt, marker):
    counts = cube_scan.get_patterns().astype(np.float64)
    dtype = np.uint16 if marker == 2**16 - 1 else (np.uint32 if marker == DEAD_PIXEL_VALUE else np.float64)
    stored = counts.astype(dtype)
    stored[:, 2, 3] = marker  # a dead pixel in every pattern
    stored[5, 7, 1] = marker  # and one in a single pattern
    if fmt == "cxi":
        path = tmp_path / "scan.cxi"
        write_scan(cube_scan, path)
        with h5py.File(path, "a") as handle:
            del handle["entry_1/instrument_1/detector_1/data"]
            handle["entry_1/instrument_1/detector_1/data"] = stored
    elif fmt == "ptychodus":
        path = write_ptychodus_folder(cube_scan, tmp_path / "run")
        with h5py.File(path / "diffraction.h5", "a") as handle:
            attrs = dict(handle["patterns"].attrs)
            del handle["patterns"]
            handle["patterns"] = stored
            handle["patterns"].attrs.update(attrs)
    elif fmt == "npz":
        path = tmp_path / "scan.npz"
        np.savez(path, diffraction=stored, probeGuess=cube_scan.probe, xcoords=cube_scan.positions[:, 1],
                 ycoords=cube_scan.positions[:, 0], _metadata=np.array('{"x": 1}'))  # fmt: skip
    else:
        np.savez(tmp_path / "raw.npz", data=stored, pos=cube_scan.positions, probe=cube_scan.probe)
        path = tmp_path / "raw.yaml"
        path.write_text(
            "format: arrays\nfile: raw.npz\ndiffraction: data\npositions: pos\nprobe: probe\n"
            "zero_frequency: centre\n"
        )
    with pytest.warns(UserWarning, match="marker; masked|masked"):
        scan = read_scan(path)
    patterns = scan.get_patterns()
    assert patterns.max() < 2**31
    if fmt != "npz":  # npz: counts are the squares of stored amplitudes, a marker squares to > 2^32
        assert not scan.mask[2, 3] and not scan.mask[7, 1] and scan.mask.sum() == 16 * 16 - 2
        assert patterns[:, 2, 3].max() == 0 and patterns[5, 7, 1] == 0


def test_a_marker_the_sample_missed_is_a_clear_error_not_a_count(tmp_path):
    scan = simulate_scan(SimulationConfig(pattern_size=8, n_positions=130, step_px=1.0, seed=1))
    path = tmp_path / "scan.cxi"
    write_scan(scan, path)
    with h5py.File(path, "a") as handle:
        data = handle["entry_1/instrument_1/detector_1/data"]
        data[1, 4, 4] = DEAD_PIXEL_VALUE  # pattern 1: between the sampled ones
    loaded = read_scan(path)
    with pytest.raises(ScanValidationError, match=r"pixel \(4, 4\) of pattern 1 holds 42949672"):
        loaded.get_patterns()


@pytest.mark.parametrize(
    "key, value, unit",
    [
        ("entry_1/instrument_1/detector_1/distance", 2000.0, "distance in mm"),
        ("entry_1/instrument_1/detector_1/distance", 2e9, "distance in nm"),
        ("entry_1/instrument_1/source_1/energy", 1.6e-19 * 8.8e6, "energy far too high"),
        ("entry_1/instrument_1/detector_1/x_pixel_size", 75.0, "pixel in um"),
    ],
)
def test_geometry_in_the_wrong_unit_is_refused(cube_scan, tmp_path, key, value, unit):
    path = tmp_path / "scan.cxi"
    write_scan(cube_scan, path)
    with h5py.File(path, "a") as handle:
        handle[key][()] = value
        if key.endswith("x_pixel_size"):
            handle["entry_1/instrument_1/detector_1/y_pixel_size"][()] = value
    with pytest.raises(ScanValidationError, match="physical range|wrong unit"):
        read_scan(path)


def test_translations_collapsing_to_one_point_are_refused(cube_scan, tmp_path):
    path = tmp_path / "scan.cxi"
    write_scan(cube_scan, path)
    with h5py.File(path, "a") as handle:
        del handle["entry_1/ptychopinn/positions_px"]  # so the translations are used
        translation = handle["entry_1/sample_1/geometry_1/translation"]
        translation[...] = translation[()] * 1e-9  # metres written as if they were nm
    with pytest.raises(ScanValidationError, match="within one object pixel"):
        read_scan(path)


def test_centred_positions_without_an_object_keep_every_pattern(cube_scan, tmp_path):
    size = cube_scan.pattern_size
    centred = cube_scan.positions - cube_scan.positions.mean(axis=0)
    path = tmp_path / "centred.npz"
    amplitudes = np.sqrt(cube_scan.get_patterns())
    np.savez(path, diffraction=amplitudes, diff3d=amplitudes, probeGuess=cube_scan.probe,
             xcoords=centred[:, 1], ycoords=centred[:, 0])  # fmt: skip
    scan = read_scan(path)
    assert scan.positions.min() == pytest.approx(size / 2)
    np.testing.assert_allclose(np.diff(scan.positions, axis=0), np.diff(cube_scan.positions, axis=0))
    out = tmp_path / "rec"
    assert main(["reconstruct", str(path), "--output-dir", str(out), "--epochs", "1", "--no-pretrained",
                 "--no-progress"]) == 0  # fmt: skip
    with np.load(out / "reconstruction.npz") as result:
        centres = np.round(result["positions"]).astype(int)
        assert len(centres) == scan.n_patterns and result["coverage"][centres[:, 0], centres[:, 1]].all()


@pytest.mark.parametrize(
    "indexes, message",
    [
        (np.array([0.0, 1.0, np.nan] + list(range(3, 16)), dtype=np.float64), "non-finite"),
        (np.arange(16) + 0.5, "whole numbers"),
        (np.array([0, 0] + list(range(2, 16))), "duplicate"),
        (np.array([b"a"] * 16), "not an integer scan index"),
    ],
    ids=["nan", "fractional", "duplicate", "strings"],
)
@pytest.mark.parametrize("where", ["diffraction.h5:indexes", "product.h5:probe_position_indexes"])
def test_ptychodus_scan_indexes_are_judged_not_cast(cube_scan, tmp_path, indexes, message, where):
    folder = write_ptychodus_folder(cube_scan, tmp_path / "run")
    file, key = where.split(":")
    with h5py.File(folder / file, "a") as handle:
        del handle[key]
        handle[key] = indexes
    with pytest.raises(ScanValidationError, match=message):
        read_scan(folder)


@pytest.mark.parametrize(
    "text, suffix",
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
            ".yaml",
        ),
        ("[" * 100_000 + "]" * 100_000, ".json"),
        ("data:\n" + "".join("  " * i + f"l{i}:\n" for i in range(1, 60)), ".yaml"),
        ("- just\n- a list\n", ".yaml"),
    ],
    ids=["alias-bomb", "deep-json", "deep-yaml", "not-a-mapping"],
)
def test_configuration_files_that_explode_are_refused(tmp_path, capsys, text, suffix):
    config = tmp_path / f"config{suffix}"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(config) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_training_from_a_bundle_with_nan_weights_is_refused(tmp_path, capsys):
    import hashlib
    import zipfile

    from safetensors.torch import load, save

    from ptychopinn.workflows.pretrained import shipped_bundles

    with zipfile.ZipFile(shipped_bundles()[0]) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        tensors = load(archive.read("weights.safetensors"))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel())
    tensors[name].view(-1)[0] = float("nan")
    weights = save(tensors)
    manifest["payloads"]["weights.safetensors"] = {"sha256": hashlib.sha256(weights).hexdigest(),
                                                   "bytes": len(weights)}  # fmt: skip
    bundle = tmp_path / "nan.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("weights.safetensors", weights)
    scan = simulate_scan(SimulationConfig(pattern_size=64, n_positions=9, step_px=10.0, seed=1))
    write_scan(scan, tmp_path / "scan.npz")
    code = main(["train", "--train-data", str(tmp_path / "scan.npz"), "--output-dir", str(tmp_path / "o"),
                 "--init-from", str(bundle), "--epochs", "1"])  # fmt: skip
    assert code == 2 and "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
