"""The registry of scan formats: every reader and writer chosen in one place."""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn.io import (
    ScanFormat,
    detect_format,
    get_format,
    inspect_file,
    list_formats,
    read_scan,
    register_format,
    write_scan,
)
from ptychopinn.registry import SCAN_FORMATS


def test_every_format_is_registered_in_detection_order():
    names = [f.name for f in list_formats()]
    assert names == ["arrays", "ptychodus", "npz", "cxi"]
    assert [f.order for f in list_formats()] == sorted(f.order for f in list_formats())
    with pytest.raises(ValueError, match="unknown scan format 'tiff'; choose from arrays, cxi, npz"):
        get_format("tiff")


WRITABLE = [f for f in list_formats() if f.write is not None]


@pytest.mark.parametrize("scan_format", WRITABLE, ids=lambda f: f.name)
def test_each_writable_format_reads_back_what_it_wrote(scan_format, small_scan, tmp_path):
    path = tmp_path / f"scan{scan_format.suffixes[0]}"
    write_scan(small_scan, path)
    assert detect_format(path) == scan_format.name
    back = read_scan(path)
    np.testing.assert_allclose(back.diffraction, small_scan.diffraction, rtol=1e-6)
    np.testing.assert_allclose(back.positions, small_scan.positions, atol=1e-9)
    assert inspect_file(path).contents  # its lister names what the file holds


def test_a_new_format_is_one_registration(small_scan, tmp_path):
    """What a new module in ptychopinn/io does, checked without leaving one behind."""
    magic = b"TOYSCAN1"

    def read(path, **_):
        return small_scan.replace(source=str(path))

    toy = ScanFormat(
        name="toy",
        description="a test format",
        detect=lambda path, head: head == magic,
        read=read,
        contents=lambda path: [("everything", (small_scan.n_patterns,), "toy")],
        order=40,
    )
    register_format(toy)
    try:
        path = tmp_path / "scan.whatever"
        path.write_bytes(magic + b"rest")
        assert detect_format(path) == "toy"
        assert read_scan(path).n_patterns == small_scan.n_patterns
        report = inspect_file(path)
        assert report.format == "toy" and report.contents[0][0] == "everything"
        with pytest.raises(ValueError, match="suffix .npz of 'other' is taken by 'npz'"):
            other = ScanFormat("other", "", lambda p, h: False, read, toy.contents, suffixes=(".npz",))
            register_format(other)
        with pytest.raises(ValueError, match="cannot tell the format from suffix '.toy'"):
            write_scan(small_scan, tmp_path / "out.toy")  # not writable: no suffix claimed
    finally:
        SCAN_FORMATS.unregister("toy")
    assert [f.name for f in list_formats()] == ["arrays", "ptychodus", "npz", "cxi"]


def test_reconstruction_files_are_written_and_read_in_one_place(tmp_path):
    from ptychopinn.io import ScanValidationError
    from ptychopinn.io.reconstruction import read_reconstruction, write_reconstruction_npz

    obj = np.exp(1j * np.linspace(0, 1, 48)).reshape(6, 8).astype(np.complex64)
    coverage = np.ones((6, 8), bool)
    coverage[0] = False
    path = write_reconstruction_npz(
        tmp_path / "reconstruction.npz", obj, coverage=coverage, weight_sum=coverage * 2.0,
        positions=np.array([[3.0, 4.0]]), pixel_size_m=1e-8, extra_arrays={"probe": np.ones((2, 2))},
    )  # fmt: skip
    back = read_reconstruction(tmp_path)  # the folder will do
    np.testing.assert_array_equal(back.object, obj)
    np.testing.assert_array_equal(back.coverage, coverage)
    assert back.pixel_size_m == 1e-8 and back.probe.shape == (2, 2) and back.positions.shape == (1, 2)
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ScanValidationError, match="no 'object' array"):
        read_reconstruction(path)
