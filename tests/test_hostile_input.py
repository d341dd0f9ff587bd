"""Hostile input, property-based: every bad file, config or argument ends in a clear error.

Readers may only raise the package's own errors (ScanFileError, ScanValidationError), configs
only ValueError, the command line only a non-zero exit; never another exception, a hang or
a silently wrong result. Example counts are bounded so the suite stays fast in CI.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptychopinn.cli.main import main
from ptychopinn.config import RunConfig
from ptychopinn.io import ScanFileError, ScanValidationError, inspect_file, read_scan, write_scan
from ptychopinn.simulate import SimulationConfig, simulate_scan

READ_ERRORS = (ScanFileError, ScanValidationError)
BOUNDED = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    scan = simulate_scan(SimulationConfig(pattern_size=8, n_positions=9, step_px=2.0, seed=1))
    files = {}
    for suffix in ("npz", "cxi"):
        files[suffix] = root / f"scan.{suffix}"
        write_scan(scan, files[suffix])
    return {k: v.read_bytes() for k, v in files.items()}


def read_fully(path, lazy=None):
    scan = read_scan(path, lazy=lazy)  # lazy=True: NPZ data memory-mapped, checked block by block
    scan.validate(full=True)
    return scan


@BOUNDED
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".npz", ".cxi", ".h5"]))
def test_random_bytes_are_refused(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("rand") / f"file{suffix}"
    path.write_bytes(data)
    with pytest.raises(READ_ERRORS):
        read_fully(path)
    assert not inspect_file(path).ok


@BOUNDED
@given(
    fraction=st.floats(min_value=0.0, max_value=0.999),
    kind=st.sampled_from(["npz", "cxi"]),
    lazy=st.sampled_from([None, True]),
)
def test_truncated_files_are_refused(tmp_path_factory, good_files, fraction, kind, lazy):
    data = good_files[kind]
    path = tmp_path_factory.mktemp("cut") / f"cut.{kind}"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(READ_ERRORS):
        read_fully(path, lazy=lazy)
    report = inspect_file(path)
    assert not report.ok and report.problems


@BOUNDED
@given(position=st.integers(min_value=0, max_value=10_000), value=st.integers(min_value=1, max_value=255))
def test_corrupted_bytes_never_crash_and_never_pass_bad_values(tmp_path_factory, good_files, position, value):
    for kind, lazy in (("npz", None), ("npz", True), ("cxi", None)):
        data = bytearray(good_files[kind])
        data[position % len(data)] ^= value
        path = tmp_path_factory.mktemp("flip") / f"flip.{kind}"
        path.write_bytes(bytes(data))
        try:
            scan = read_fully(path, lazy=lazy)
        except READ_ERRORS:
            continue
        # whatever still reads must satisfy the contract
        counts = scan.get_patterns()
        assert np.isfinite(counts).all() and (counts >= 0).all()
        assert np.isfinite(scan.positions).all() and np.isfinite(scan.probe).all()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


finite_or_not = st.sampled_from([0.0, 1.0, 4.0, -1.0, np.nan, np.inf, -np.inf, 1e30])


@BOUNDED
@given(
    n=st.integers(min_value=0, max_value=5),
    size=st.sampled_from([1, 2, 3, 4]),
    value=finite_or_not,
    position=finite_or_not,
    dtype=st.sampled_from([np.float32, np.float64, np.int16, np.uint16, np.complex64]),
    layout=st.sampled_from(["first", "last", "flat"]),
    coords=st.integers(min_value=0, max_value=6),
    probe_size=st.sampled_from([1, 2, 4]),
)
def test_crafted_npz_files_are_read_correctly_or_refused(
    tmp_path_factory, n, size, value, position, dtype, layout, coords, probe_size
):
    amplitude = (
        np.full((n, size, size), value).astype(dtype)
        if dtype != np.complex64
        else np.full((n, size, size), value, np.complex64)
    )
    if layout == "last":
        amplitude = np.moveaxis(amplitude, 0, -1)
    elif layout == "flat":
        amplitude = amplitude.reshape(-1)
    positions = np.full(coords, position)
    path = tmp_path_factory.mktemp("craft") / "craft.npz"
    path.write_bytes(
        npz_bytes(
            diffraction=amplitude,
            xcoords=positions,
            ycoords=positions,
            probeGuess=np.ones((probe_size, probe_size), np.complex64),
        )
    )
    try:
        scan = read_fully(path)
    except READ_ERRORS as exc:
        assert str(path) in str(exc)
        return
    counts = scan.get_patterns()
    assert np.isfinite(counts).all() and (counts >= 0).all()
    assert scan.n_patterns == coords >= 1 and scan.pattern_size == probe_size
    assert np.isfinite(scan.positions).all()


def test_a_header_claiming_a_trillion_patterns_is_refused_in_hdf5_too(tmp_path):
    import h5py

    path = tmp_path / "huge.cxi"
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 160
        f.create_dataset(
            "entry_1/instrument_1/detector_1/data",
            shape=(10**12, 64, 64),
            dtype=np.float32,
            chunks=(1, 64, 64),
        )
        f["entry_1/instrument_1/source_1/illumination"] = np.ones((64, 64), np.complex64)
        f["entry_1/sample_1/geometry_1/translation"] = np.zeros((3, 3))
    with pytest.raises(READ_ERRORS) as caught:
        read_scan(path)
    assert (
        "positions" in str(caught.value)
        or "10**12" in str(caught.value)
        or "1000000000000" in str(caught.value)
    )


config_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
sections = RunConfig().to_dict()
field_names = [(section, name) for section, values in sections.items() for name in values]


@settings(max_examples=300, deadline=None)
@given(target=st.sampled_from(field_names), value=config_values)
def test_any_config_value_is_accepted_validated_or_refused_with_a_value_error(target, value):
    section, name = target
    try:
        config = RunConfig().updated({section: {name: value}})
    except ValueError as exc:
        assert name in str(exc)
        return
    # accepted values round-trip through the file format
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict(), default=str))) == config


@settings(max_examples=60, deadline=None)
@given(values=st.dictionaries(st.text(max_size=8), config_values, max_size=3))
def test_unknown_sections_and_fields_are_refused(values):
    try:
        RunConfig().updated({"execution": values})
    except ValueError:
        return
    assert set(values) <= set(sections["execution"])


numbers = st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e400", "abc", "", "1.5", "3"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flag=st.sampled_from(
        [
            "--n-positions",
            "--patch-size",
            "--step",
            "--photons",
            "--jitter",
            "--beamstop-radius",
            "--energy-ev",
            "--distance",
            "--amplitude-min",
            "--seed",
        ]
    ),
    value=numbers,
)
def test_bad_simulate_arguments_exit_nonzero_without_writing(tmp_path_factory, capsys, flag, value):
    out = tmp_path_factory.mktemp("cli") / "scan.npz"
    argv = ["simulate", "--output", str(out), "-N", "8", "--n-positions", "4", "--step", "2", flag, value]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    capsys.readouterr()
    if code == 0:  # a valid value: the file is complete and readable
        assert read_scan(out).n_patterns >= 1
    else:
        assert code in (1, 2) and not out.exists()


def test_zip_with_unexpected_member_types_is_refused(tmp_path):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("diffraction.npy", b"not an array")
        archive.writestr("xcoords.npy", b"\x93NUMPY garbage")
    with pytest.raises(READ_ERRORS):
        read_scan(path)
