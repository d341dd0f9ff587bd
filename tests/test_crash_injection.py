"""A crash in the middle of any output writer leaves the previous file whole and no debris.

Each writer first writes a good file, then is run again with a fault injected part-way
through the bytes it writes (the second block, the third dataset, ...): the target must still
hold the first version, byte for byte, and no temporary file may remain.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch

from ptychopinn.io import write_bundle, write_scan
from ptychopinn.io.ptychodus import write_ptychodus_product
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows.inference import Reconstruction
from ptychopinn.workflows.outputs import write_reconstruction
from ptychopinn.workflows.report import write_report


class Crash(OSError):
    pass


def fail_on_call(monkeypatch, owner, name, call: int):
    """Make ``owner.name`` raise on its ``call``-th use (the earlier ones work)."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= call:
            raise Crash("injected crash mid-write")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.fixture(scope="module")
def scan():
    return simulate_scan(SimulationConfig(pattern_size=16, n_positions=16, step_px=3.0, seed=7))


def reconstruction(scan, value):
    obj = np.full(scan.object.shape, value, np.complex64)
    return Reconstruction(obj, np.ones(obj.shape, bool), np.ones(obj.shape, np.float32), scan.positions, None)


WRITERS = {
    # name: (target file, write(scan, folder, version), (owner, attribute, failing call))
    "npz scan": ("scan.npz", lambda s, d, v: write_scan(s.replace(positions=s.positions + v), d / "scan.npz"),
                 (np.lib.format, "write_array_header_1_0", 2)),
    "cxi scan": ("scan.cxi", lambda s, d, v: write_scan(s.replace(positions=s.positions + v), d / "scan.cxi"),
                 (h5py.Group, "create_dataset", 2)),
    "ptychodus product": (
        "product.h5",
        lambda s, d, v: write_ptychodus_product(
            d / "product.h5", object=s.object, probe=s.probe, positions=s.positions + v,
            pixel_size_m=s.pixel_size_m(), energy_ev=s.metadata.energy_ev,
            detector_distance_m=s.metadata.detector_distance_m),
        (h5py.Group, "create_dataset", 3)),
    "bundle": ("model.zip",
               lambda s, d, v: write_bundle(d / "model.zip", {"v": v}, {"w": torch.full((9,), v)}),
               (zipfile.ZipFile, "writestr", 2)),
    "reconstruction arrays": ("reconstruction.npz",
                              lambda s, d, v: write_reconstruction(reconstruction(s, v + 1), d),
                              (zipfile.ZipFile, "open", 3)),
    "reconstruction tiff": ("phase.tiff",
                            lambda s, d, v: write_reconstruction(reconstruction(s, np.exp(.3j + .3j * v)), d),
                            (tifffile, "imwrite", 2)),
    "report": ("report.html", lambda s, d, v: write_report(d, f"run {v}", details={"v": v}),
               (Path, "write_text", 1)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_crash_mid_write_keeps_the_previous_file(scan, tmp_path, monkeypatch, name):
    target, write, (owner, attribute, call) = WRITERS[name]
    write(scan, tmp_path, 0)
    before = (tmp_path / target).read_bytes()
    with monkeypatch.context() as patch:
        fail_on_call(patch, owner, attribute, call)
        with pytest.raises(Crash):
            write(scan, tmp_path, 1)
    assert (tmp_path / target).read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    write(scan, tmp_path, 1)  # and the writer works again afterwards
    assert (tmp_path / target).read_bytes() != before
