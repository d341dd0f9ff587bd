"""File formats round-trip, and every bad file is refused with a message naming the problem."""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile

import h5py
import numpy as np
import pytest

from ptychopinn.io import (
    HDF5Patterns,
    MappedPatterns,
    ScanFileError,
    ScanValidationError,
    classify_diffraction_values,
    detect_format,
    inspect_file,
    read_cxi,
    read_npz,
    read_scan,
    write_cxi,
    write_npz,
    write_scan,
)
from ptychopinn.simulate import SimulationConfig, beamstop_mask, simulate_scan


@pytest.fixture(scope="module")
def rich_scan():
    """A scan using every optional field: mask, patches, two probe modes, scan index."""
    base = simulate_scan(
        SimulationConfig(
            pattern_size=16,
            n_positions=12,
            step_px=3.0,
            beamstop_radius_px=2,
            include_patches=True,
            seed=5,
        )
    )
    modes = np.stack([base.probe, 0.3 * np.roll(base.probe, 1, axis=0)])
    return base.replace(probe=modes, scan_index=np.arange(12) % 3)


def assert_same_scan(a, b):
    np.testing.assert_array_equal(a.get_patterns(), b.get_patterns())
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.probe, b.probe)
    np.testing.assert_array_equal(a.object, b.object)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.scan_index, b.scan_index)
    np.testing.assert_array_equal(a.patches, b.patches)
    assert a.metadata == b.metadata


# --- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npz", ".cxi", ".h5"])
def test_write_then_read_round_trips_every_field(rich_scan, tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    write_scan(rich_scan, path)
    back = read_scan(path)
    assert_same_scan(rich_scan, back)
    assert back.source == str(path)
    assert back.is_lazy == (suffix != ".npz")


def test_npz_holds_the_ptychopinn_contract_keys(small_scan, tmp_path):
    path = tmp_path / "scan.npz"
    write_npz(small_scan, path)
    with np.load(path, allow_pickle=False) as data:
        for key in (
            "diffraction",
            "diff3d",
            "probeGuess",
            "objectGuess",
            "xcoords",
            "ycoords",
            "scan_index",
        ):
            assert key in data.files
        amplitude = data["diffraction"]
        assert amplitude.dtype == np.float32 and amplitude.shape == small_scan.diffraction.shape
        np.testing.assert_allclose(amplitude**2, small_scan.diffraction, rtol=1e-6)
        np.testing.assert_array_equal(data["xcoords"], small_scan.positions[:, 1])
    with zipfile.ZipFile(path) as archive:
        raw = archive.read("_metadata.npy")
    assert b"nphotons" in raw


def test_cxi_is_in_si_units(small_scan, tmp_path):
    path = tmp_path / "scan.cxi"
    write_cxi(small_scan, path)
    with h5py.File(path, "r") as f:
        assert f["cxi_version"][()] == 160
        energy_j = f["entry_1/instrument_1/source_1/energy"][()]
        assert energy_j == pytest.approx(small_scan.metadata.energy_ev * 1.602176634e-19)
        translation = f["entry_1/sample_1/geometry_1/translation"][()]
        dx = small_scan.pixel_size_m()
        np.testing.assert_allclose(translation[:, 0], small_scan.positions[:, 1] * dx)
        np.testing.assert_allclose(translation[:, 1], small_scan.positions[:, 0] * dx)
        assert f["entry_1/data_1/data"].shape == small_scan.diffraction.shape


def test_foreign_cxi_positions_come_from_metres(small_scan, tmp_path):
    path = tmp_path / "foreign.cxi"
    write_cxi(small_scan, path)
    with h5py.File(path, "a") as f:
        del f["entry_1/ptychopinn"]
    scan = read_cxi(path)
    expected = small_scan.positions - small_scan.positions.min(axis=0) + small_scan.pattern_size // 2
    np.testing.assert_allclose(scan.positions, expected, atol=1e-9)


def test_cxi_reads_lazily_and_slices_any_way(small_scan, tmp_path):
    path = tmp_path / "scan.cxi"
    write_cxi(small_scan, path)
    scan = read_cxi(path)
    assert isinstance(scan.diffraction, HDF5Patterns)
    truth = small_scan.diffraction
    np.testing.assert_array_equal(scan.get_patterns(3), truth[3])
    np.testing.assert_array_equal(scan.get_patterns(slice(5, 9)), truth[5:9])
    index = np.array([7, 2, 7, 0])  # unsorted, repeated
    np.testing.assert_array_equal(scan.get_patterns(index), truth[index])
    loaded = scan.load()
    assert not loaded.is_lazy
    np.testing.assert_array_equal(loaded.diffraction, truth)


def test_cxi_copy_of_a_lazy_scan_streams(small_scan, tmp_path):
    first, second = tmp_path / "a.cxi", tmp_path / "b.npz"
    write_cxi(small_scan, first)
    write_npz(read_cxi(first), second)
    assert_same_scan(small_scan, read_npz(second))


# --- NPZ variants from the PtychoPINN tools ----------------------------------------------------
def legacy_npz(path, scan, **overrides):
    amplitude = np.sqrt(scan.diffraction)
    arrays = dict(
        diff3d=np.moveaxis(amplitude, 0, 2),  # old (N, N, n) layout
        probeGuess=scan.probe[..., None],  # (N, N, 1)
        objectGuess=scan.object,
        xcoords_start=scan.positions[:, 1],
        ycoords_start=scan.positions[:, 0],
    )
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_reads_legacy_layout_keys_and_singleton_axes(small_scan, tmp_path):
    scan = read_npz(legacy_npz(tmp_path / "old.npz", small_scan))
    np.testing.assert_array_equal(scan.diffraction, small_scan.diffraction)
    np.testing.assert_array_equal(scan.positions, small_scan.positions)
    assert scan.probe.shape == small_scan.probe.shape


def test_normalised_amplitudes_need_a_photon_count(small_scan, tmp_path):
    normalised = np.sqrt(small_scan.diffraction / small_scan.total_counts().mean() * 1000.0)
    path = legacy_npz(tmp_path / "norm.npz", small_scan, diff3d=normalised)
    with pytest.raises(ScanValidationError, match="--nphotons") as caught:
        read_npz(path)
    assert str(path) in str(caught.value) and "'diff3d'" in str(caught.value)
    scan = read_npz(path, photons_per_pattern=5e4)
    assert scan.total_counts().mean() == pytest.approx(5e4, rel=1e-5)
    # the same file with nphotons in _metadata needs no flag
    meta = np.array(json.dumps({"physics_parameters": {"nphotons": 2e4}}), dtype=object)
    path2 = legacy_npz(tmp_path / "norm_meta.npz", small_scan, diff3d=normalised, _metadata=meta)
    assert read_npz(path2).total_counts().mean() == pytest.approx(2e4, rel=1e-5)


def test_counts_and_amplitudes_are_told_apart_from_the_numbers(small_scan, tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.poisson(5e4, size=(small_scan.n_patterns, 32, 32)).astype(np.uint32)  # > 65535 too
    counts[0, 0, 0] = 90_000
    # whole numbers are counts, whatever the key says (ptychodus' diff3d holds raw counts)
    as_counts = read_npz(legacy_npz(tmp_path / "counts.npz", small_scan, diff3d=counts))
    np.testing.assert_array_equal(as_counts.diffraction, counts.astype(np.float32))
    # their square roots are amplitudes, squared back exactly (in float64: no uint16 overflow)
    amplitudes = np.sqrt(counts.astype(np.float64)).astype(np.float32)
    as_amplitudes = read_npz(legacy_npz(tmp_path / "amplitudes.npz", small_scan, diff3d=amplitudes))
    np.testing.assert_array_equal(as_amplitudes.diffraction, counts.astype(np.float32))
    assert classify_diffraction_values(counts) == "counts"
    assert classify_diffraction_values(amplitudes) == "amplitudes"
    assert classify_diffraction_values(amplitudes / 3.7) == "normalised"


def test_metadata_pickle_cannot_run_code(small_scan, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.npz"
    write_npz(small_scan, path)
    payload = io.BytesIO()
    np.lib.format.write_array_header_1_0(payload, {"descr": "|O", "fortran_order": False, "shape": ()})
    payload.write(pickle.dumps(Exploit()))
    with zipfile.ZipFile(path, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the duplicate member name is the point
        archive.writestr("_metadata.npy", payload.getvalue())  # the last duplicate wins on read
    with pytest.warns(UserWarning, match="refusing to load global"):
        scan = read_npz(path)
    assert not marker.exists()
    np.testing.assert_array_equal(scan.diffraction, small_scan.diffraction)


# --- bad files ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("drop_or_change", "key", "fragment"),
    [
        (dict(probeGuess=None), "probeGuess", "required key is missing"),
        (dict(diff3d=None), None, "expected key 'diffraction' or 'diff3d'"),
        (dict(xcoords_start=None), "xcoords", "required key is missing"),
        (dict(diff3d=np.ones((5, 32, 32), np.float32)), "diff3d", "matches neither"),
        (dict(probeGuess=np.ones((16, 16), np.complex64)), "probe", "N = 32"),
        (dict(ycoords_start=np.zeros(3)), "xcoords_start", "differs from"),
    ],
)
def test_npz_missing_or_misshapen_keys_are_named(small_scan, tmp_path, drop_or_change, key, fragment):
    path = legacy_npz(tmp_path / "bad.npz", small_scan, **drop_or_change)
    with pytest.raises(ScanValidationError) as caught:
        read_npz(path)
    message = str(caught.value)
    assert str(path) in message and fragment in message
    if key:
        assert f"'{key}'" in message


@pytest.mark.parametrize(("value", "fragment"), [(np.nan, "non-finite"), (-1.0, "negative value")])
def test_npz_bad_values_are_named_with_their_pattern(small_scan, tmp_path, value, fragment):
    amplitude = np.sqrt(small_scan.diffraction)
    amplitude[6, 3, 4] = value
    path = legacy_npz(tmp_path / "bad.npz", small_scan, diff3d=None, diffraction=amplitude)
    with pytest.raises(ScanValidationError, match=fragment) as caught:
        read_npz(path)
    assert "pattern 6" in str(caught.value) and "'diffraction'" in str(caught.value)


@pytest.mark.parametrize("suffix", [".npz", ".cxi"])
def test_truncated_files_are_refused_naming_the_file(small_scan, tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    write_scan(small_scan, good)
    data = good.read_bytes()
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises((ScanFileError, ScanValidationError)) as caught:
        scan = read_scan(bad)
        scan.validate(full=True)
    assert str(bad) in str(caught.value)


def test_header_claiming_absurd_size_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    payload = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 64, 64)}
    np.lib.format.write_array_header_1_0(payload, header)
    payload.write(b"\0" * 1024)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("diffraction.npy", payload.getvalue())
        for key in ("xcoords", "ycoords"):
            buffer = io.BytesIO()
            np.save(buffer, np.zeros(3))
            archive.writestr(f"{key}.npy", buffer.getvalue())
    with pytest.raises(ScanFileError, match="claims shape") as caught:
        read_npz(path)
    assert "'diffraction'" in str(caught.value)
    report = inspect_file(path)
    assert not report.ok and "claims shape" in report.problems[0]


def test_not_a_scan_file_is_refused(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ScanFileError, match="empty"):
        read_scan(empty)
    junk = tmp_path / "junk.cxi"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ScanFileError, match="unknown format"):
        read_scan(junk)
    with pytest.raises(ScanFileError, match="no such file"):
        read_scan(tmp_path / "missing.npz")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    with pytest.raises(ScanValidationError, match="not a CXI file"):
        read_scan(plain)


# --- memory-mapped NPZ ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["current", "legacy"])
@pytest.mark.parametrize("normalised", [False, True])
def test_mapped_npz_serves_the_same_counts_as_a_loaded_one(small_scan, tmp_path, layout, normalised):
    amplitude = np.sqrt(small_scan.diffraction)
    if normalised:
        amplitude = amplitude / 7.3
    stored = np.moveaxis(amplitude, 0, 2) if layout == "legacy" else amplitude
    path = legacy_npz(tmp_path / "scan.npz", small_scan, diff3d=stored)
    photons = 4e4 if normalised else None
    loaded = read_npz(path, photons_per_pattern=photons, lazy=False)
    mapped = read_npz(path, photons_per_pattern=photons, lazy=True)
    assert isinstance(mapped.diffraction, MappedPatterns) and not loaded.is_lazy
    assert mapped.diffraction.shape == loaded.diffraction.shape
    np.testing.assert_allclose(mapped.get_patterns(), loaded.diffraction, rtol=1e-6)
    if not normalised:
        np.testing.assert_array_equal(mapped.get_patterns(), small_scan.diffraction)
    index = np.array([7, 2, 7, 0])
    np.testing.assert_allclose(mapped.get_patterns(index), loaded.diffraction[index], rtol=1e-6)
    np.testing.assert_allclose(mapped.get_patterns(3), loaded.diffraction[3], rtol=1e-6)
    # a data-loader worker receives a picklable source that maps the file again
    copy = pickle.loads(pickle.dumps(mapped.diffraction))
    np.testing.assert_array_equal(copy[2:5], mapped.get_patterns(slice(2, 5)))


def test_large_npz_members_are_mapped_by_default(small_scan, tmp_path, monkeypatch):
    import ptychopinn.io.npz as npz_module

    path = tmp_path / "scan.npz"
    write_npz(small_scan, path)
    assert not read_scan(path).is_lazy  # small: loaded
    monkeypatch.setattr(npz_module, "LAZY_THRESHOLD_BYTES", 0)
    scan = read_scan(path)
    assert isinstance(scan.diffraction, MappedPatterns)
    np.testing.assert_array_equal(scan.get_patterns(), small_scan.diffraction)


def test_compressed_npz_cannot_be_mapped_and_is_loaded_with_a_warning(small_scan, tmp_path):
    path = tmp_path / "packed.npz"
    np.savez_compressed(
        path,
        diffraction=np.sqrt(small_scan.diffraction),
        probeGuess=small_scan.probe,
        xcoords=small_scan.positions[:, 1],
        ycoords=small_scan.positions[:, 0],
    )
    with pytest.warns(UserWarning, match="cannot be memory-mapped"):
        scan = read_npz(path, lazy=True)
    assert not scan.is_lazy
    np.testing.assert_array_equal(scan.diffraction, small_scan.diffraction)


def test_mapped_npz_bad_values_are_named_with_their_pattern(small_scan, tmp_path):
    amplitude = np.sqrt(small_scan.diffraction)
    amplitude[9, 0, 0] = np.nan
    path = legacy_npz(tmp_path / "nan.npz", small_scan, diff3d=amplitude)
    # found when the file is opened (a sample of patterns is read) or at the latest when read
    with pytest.raises(ScanValidationError, match="first in pattern 9") as caught:
        read_npz(path, lazy=True).get_patterns()
    assert str(path) in str(caught.value) and "'diff3d'" in str(caught.value)


def test_mapped_npz_checks_each_block_it_reads(small_scan, tmp_path):
    source_path = tmp_path / "scan.npz"
    write_npz(small_scan, source_path)
    scan = read_npz(source_path, lazy=True)
    source = scan.diffraction
    # corrupt pattern 9 on disk after opening: the next read of it must refuse it
    with open(source_path, "r+b") as handle:
        handle.seek(source.offset + 9 * source.shape[1] * source.shape[2] * 4)
        handle.write(np.array([-4.0], dtype=np.float32).tobytes())
    fresh = pickle.loads(pickle.dumps(source))  # maps the file again
    with pytest.raises(ScanValidationError, match="first in pattern 9"):
        fresh[5:12]
    np.testing.assert_array_equal(fresh[0:9], small_scan.diffraction[:9])


def test_cxi_bad_values_are_found_when_read(small_scan, tmp_path):
    path = tmp_path / "nan.cxi"
    write_cxi(small_scan, path)
    with h5py.File(path, "a") as f:
        f["entry_1/instrument_1/detector_1/data"][9, 0, 0] = np.nan
    scan = read_cxi(path)  # lazily: the header is fine
    with pytest.raises(ScanValidationError, match="first in pattern 9") as caught:
        scan.validate(full=True)
    assert "entry_1/instrument_1/detector_1/data" in str(caught.value)
    np.testing.assert_array_equal(scan.get_patterns(slice(0, 9)), small_scan.diffraction[:9])


def test_cxi_missing_probe_and_geometry_are_named(small_scan, tmp_path):
    path = tmp_path / "noprobe.cxi"
    write_cxi(small_scan, path)
    with h5py.File(path, "a") as f:
        del f["entry_1/instrument_1/source_1/illumination"]
    with pytest.raises(ScanValidationError, match="no probe"):
        read_cxi(path)
    path2 = tmp_path / "nodistance.cxi"
    write_cxi(small_scan, path2)
    with h5py.File(path2, "a") as f:
        del f["entry_1/ptychopinn"]
        del f["entry_1/instrument_1/detector_1/distance"]
    with pytest.raises(ScanValidationError, match="detector_1/distance missing"):
        read_cxi(path2)


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporaries(small_scan, tmp_path):
    path = tmp_path / "scan.cxi"
    write_cxi(small_scan, path)
    before = path.read_bytes()
    no_geometry = small_scan.replace(metadata=type(small_scan.metadata)())
    with pytest.raises(ScanValidationError, match="SI units"):
        write_cxi(no_geometry, path)

    class Boom(RuntimeError):
        pass

    class ExplodingPatterns:
        shape = small_scan.diffraction.shape

        def __len__(self):
            return self.shape[0]

        def __getitem__(self, index):
            raise Boom("disk on fire")

    with pytest.raises(Boom):
        write_cxi(small_scan.replace(diffraction=ExplodingPatterns()), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.cxi"]


def test_detect_format_uses_content_not_name(small_scan, tmp_path):
    path = tmp_path / "really_npz.cxi"
    write_npz(small_scan, tmp_path / "x.npz")
    path.write_bytes((tmp_path / "x.npz").read_bytes())
    assert detect_format(path) == "npz"
    with pytest.raises(ValueError, match="suffix"):
        write_scan(small_scan, tmp_path / "scan.txt")


# --- inspection --------------------------------------------------------------------------------
def test_inspect_reports_contents_and_no_problems_for_a_good_file(small_scan, tmp_path):
    path = tmp_path / "scan.cxi"
    write_cxi(small_scan, path)
    report = inspect_file(path)
    assert report.ok and report.format == "cxi"
    names = [name for name, _, _ in report.contents]
    assert "/entry_1/instrument_1/detector_1/data" in names
    text = report.format_text()
    assert "49 x 32 x 32" in text and "problems: none" in text


def test_inspect_reports_problems_instead_of_raising(small_scan, tmp_path):
    amplitude = np.sqrt(small_scan.diffraction)
    amplitude[2] = -1
    path = legacy_npz(tmp_path / "neg.npz", small_scan, diff3d=None, diffraction=amplitude)
    report = inspect_file(path)
    assert not report.ok
    assert any("negative" in p and "pattern 2" in p for p in report.problems)
    assert ("diffraction", amplitude.shape, "float32") in report.contents


def test_inspect_notes_an_uncalibrated_probe(small_scan, tmp_path):
    path = tmp_path / "scan.npz"
    write_npz(small_scan.replace(probe=small_scan.probe * 100), path)
    report = inspect_file(path)
    assert report.ok
    assert any("not calibrated" in note for note in report.notes)


def test_beamstop_mask_survives_round_trip(tmp_path):
    scan = simulate_scan(SimulationConfig(pattern_size=16, n_positions=9, step_px=3, beamstop_radius_px=3))
    np.testing.assert_array_equal(scan.mask, beamstop_mask(16, 3))
    for suffix in (".npz", ".cxi"):
        back = read_scan(write_scan(scan, tmp_path / f"s{suffix}") or tmp_path / f"s{suffix}")
        np.testing.assert_array_equal(back.mask, scan.mask)
