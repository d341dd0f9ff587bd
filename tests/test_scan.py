"""The Scan type validates at the boundary and names the key and value at fault."""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn.io import Scan, ScanMetadata, ScanValidationError


def make(n=4, size=8, **changes):
    fields = dict(
        diffraction=np.ones((n, size, size), np.float32),
        positions=np.full((n, 2), 10.0),
        probe=np.ones((size, size), np.complex64),
        object=np.ones((24, 24), np.complex64),
        source="test.npz",
    )
    fields.update(changes)
    return Scan(**fields)


def test_valid_scan_is_coerced_to_the_contract_dtypes():
    scan = make(
        diffraction=np.ones((4, 8, 8), np.uint16),
        positions=np.full((4, 2), 10, np.int32),
        probe=np.ones((8, 8)),
        object=np.ones((24, 24)),
    )
    assert scan.diffraction.dtype == np.float32
    assert scan.positions.dtype == np.float64
    assert scan.probe.dtype == np.complex64 and scan.object.dtype == np.complex64
    assert scan.n_patterns == 4 and scan.pattern_size == 8
    assert scan.probe_modes.shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        (dict(diffraction=np.ones((4, 8), np.float32)), "diffraction", "is not (n, N, N)"),
        (
            dict(diffraction=np.ones((4, 8, 6), np.float32), probe=np.ones((8, 8))),
            "diffraction",
            "square",
        ),
        (
            dict(diffraction=np.ones((4, 7, 7), np.float32), probe=np.ones((7, 7))),
            "diffraction",
            "even",
        ),
        (
            dict(diffraction=np.ones((0, 8, 8), np.float32), positions=np.zeros((0, 2))),
            "diffraction",
            "no patterns",
        ),
        (dict(diffraction=np.ones((4, 8, 8), np.complex64)), "diffraction", "not real numeric"),
        (
            dict(diffraction=np.where(np.arange(256).reshape(4, 8, 8) == 70, np.nan, 1.0)),
            "diffraction",
            "non-finite value(s) (NaN or inf), first in pattern 1",
        ),
        (dict(diffraction=-np.ones((4, 8, 8), np.float32)), "diffraction", "negative value"),
        (dict(positions=np.zeros((3, 2))), "positions", "(n, 2) = (4, 2)"),
        (
            dict(positions=np.array([[10.0, 10.0]] * 3 + [[np.inf, 10.0]])),
            "positions",
            "non-finite",
        ),
        (dict(probe=np.ones((16, 16))), "probe", "N = 8"),
        (dict(probe=np.zeros((8, 8))), "probe", "zero everywhere"),
        (dict(probe=np.full((8, 8), np.nan)), "probe", "non-finite"),
        (dict(object=np.ones((24, 24, 2))), "object", "is not (H, W)"),
        (dict(positions=np.array([[10.0, 10.0]] * 3 + [[21.0, 10.0]])), "positions", "pattern 3"),
        (dict(positions=np.array([[3.5, 10.0]] * 4)), "positions", "outside the object"),
        (dict(mask=np.ones((4, 4), bool)), "mask", "does not match"),
        (dict(mask=np.zeros((8, 8), bool)), "mask", "every detector pixel"),
        (dict(scan_index=np.zeros(4, np.float32)), "scan_index", "integers"),
        (dict(patches=np.ones((4, 4, 4), np.complex64)), "patches", "does not match"),
    ],
)
def test_each_rule_rejects_bad_data_with_a_message_naming_it(changes, key, fragment):
    with pytest.raises(ScanValidationError) as caught:
        make(**changes)
    message = str(caught.value)
    assert message.startswith("test.npz: ")
    assert f"'{key}'" in message and fragment in message
    assert caught.value.key == key


def test_patch_exactly_on_the_object_border_is_accepted():
    # a patch at y = H - N/2 covers rows H-N .. H-1: inside
    make(positions=np.array([[20.0, 4.0], [4.0, 20.0], [4.0, 4.0], [20.0, 20.0]]))


def test_metadata_must_be_positive_and_finite():
    with pytest.raises(ScanValidationError, match="energy_ev"):
        make(metadata=ScanMetadata(energy_ev=-1.0))
    with pytest.raises(ScanValidationError, match="detector_distance_m"):
        ScanMetadata.from_dict({"detector_distance_m": "far"})


def test_pixel_size_follows_from_the_geometry():
    meta = ScanMetadata(energy_ev=8800.0, detector_distance_m=2.0, detector_pixel_size_m=75e-6)
    scan = make(metadata=meta)
    wavelength = 1239.841984e-9 / 8800.0
    assert scan.pixel_size_m() == pytest.approx(wavelength * 2.0 / (8 * 75e-6), rel=1e-9)
    assert make().pixel_size_m() is None


def test_batches_and_total_counts_stream_in_float64():
    big = np.full((5, 8, 8), 60000.0, np.float32)
    scan = make(n=5, diffraction=big, positions=np.full((5, 2), 10.0))
    assert scan.total_counts().tolist() == [60000.0 * 64] * 5
    blocks = list(scan.iter_batches(2))
    assert [start for start, _ in blocks] == [0, 2, 4]
    assert sum(len(block) for _, block in blocks) == 5
