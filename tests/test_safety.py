"""Nothing outside the input is read, nothing huge is allocated, nothing hangs (issue 15).

Crafted HDF5 files point a dataset at another file three ways (external raw storage,
external links, virtual datasets), declare arrays they never wrote, or put a group where a
dataset belongs; zip archives inflate 1000-fold; inputs are named pipes. Every one must be
refused with the file and the key named, before its bytes are read or its size allocated.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
import zipfile
from contextlib import contextmanager

import h5py
import numpy as np
import pytest

from conftest import write_ptychodus_folder
from ptychopinn.io import ScanFileError, ScanValidationError, inspect_file, read_scan, write_scan
from ptychopinn.io.safety import ReadLimits, check_zip_members, open_hdf5
from ptychopinn.simulate import SimulationConfig, simulate_scan

READ_ERRORS = (ScanFileError, ScanValidationError)
SECRET = b"PTYCHOPINN_SECRET=do-not-copy-me;" * 8
CXI_KEYS = {
    "probe": "entry_1/instrument_1/source_1/illumination",
    "data": "entry_1/instrument_1/detector_1/data",
    "translation": "entry_1/sample_1/geometry_1/translation",
    "mask": "entry_1/instrument_1/detector_1/mask",
    "positions": "entry_1/ptychopinn/positions_px",
    "object": "entry_1/image_1/data",
    "scan_index": "entry_1/ptychopinn/scan_index",
}
PTYCHODUS_KEYS = {
    "product.h5": ("probe", "object", "probe_position_x_m", "probe_position_indexes"),
    "diffraction.h5": ("patterns", "indexes", "bad_pixels"),
}
ATTACKS = ("external_storage", "external_link", "virtual", "declared_huge", "group")


@contextmanager
def deadline(seconds: int = 30):
    """Fail (instead of hanging the suite) when the body blocks, e.g. on a named pipe."""

    def expire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def scan():
    return simulate_scan(SimulationConfig(pattern_size=16, n_positions=16, step_px=3.0, seed=2))


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("elsewhere") / "secret.bin"
    path.write_bytes(SECRET * 64)
    return path


def replace_dataset(path, key, attack, secret_file):
    """Replace ``key`` in the HDF5 file ``path`` by the hostile variant ``attack``."""
    with h5py.File(path, "a") as handle:
        old = handle[key]
        shape, dtype = old.shape, old.dtype
        attrs = dict(old.attrs)
        del handle[key]
        if attack == "external_storage":
            n_bytes = int(np.prod(shape)) * dtype.itemsize
            raw = secret_file.parent / f"raw-{os.path.basename(path)}-{key.replace('/', '_')}.bin"
            raw.write_bytes((SECRET * (n_bytes // len(SECRET) + 1))[:n_bytes])
            new = handle.create_dataset(key, shape=shape, dtype=dtype, external=[(str(raw), 0, n_bytes)])
        elif attack == "external_link":
            other = secret_file.parent / f"other-{os.path.basename(path)}.h5"
            with h5py.File(other, "w") as target:
                target["data"] = np.zeros(shape, dtype)
            handle[key] = h5py.ExternalLink(str(other), "/data")
            return
        elif attack == "virtual":
            other = secret_file.parent / f"vsource-{os.path.basename(path)}.h5"
            with h5py.File(other, "w") as target:
                target["data"] = np.ones(shape, dtype)
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(other), "data", shape=shape)
            new = handle.create_virtual_dataset(key, layout)
        elif attack == "declared_huge":
            huge = (40000, 40000) if len(shape) <= 2 else (shape[0], 40000, 40000)
            new = handle.create_dataset(key, shape=huge if len(shape) > 1 else (10**10,), dtype=dtype)
        else:  # a group where a dataset belongs
            new = handle.create_group(key)
        for name, value in attrs.items():
            new.attrs[name] = value


@pytest.fixture()
def cxi_file(scan, tmp_path):
    path = tmp_path / "scan.cxi"
    write_scan(scan, path)
    with h5py.File(path, "a") as handle:  # optional datasets, so that each can be attacked
        handle[CXI_KEYS["mask"]] = np.zeros((scan.pattern_size,) * 2, np.uint32)
    return path


def assert_refused(error, *, key):
    message = str(error.value)
    assert key.split("/")[-1] in message, message
    assert SECRET[:20].decode() not in message


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("target", sorted(CXI_KEYS))
def test_a_cxi_dataset_pointing_elsewhere_or_declaring_too_much_is_refused(
    cxi_file, secret_file, target, attack
):
    if target == "translation":  # read only when our exact pixel positions are absent
        with h5py.File(cxi_file, "a") as handle:
            del handle[CXI_KEYS["positions"]]
    replace_dataset(cxi_file, CXI_KEYS[target], attack, secret_file)
    tracemalloc.start()
    try:
        with deadline(), pytest.raises(READ_ERRORS) as error:
            read_scan(cxi_file).validate(full=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_refused(error, key=CXI_KEYS[target])
    assert peak < 64 * 1024**2, f"{peak / 1024**2:.0f} MiB allocated before refusing"
    report = inspect_file(cxi_file)
    assert not report.ok and SECRET[:20].decode() not in report.format_text()


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("file, key", [(f, k) for f, keys in sorted(PTYCHODUS_KEYS.items()) for k in keys])
def test_a_ptychodus_dataset_pointing_elsewhere_is_refused(scan, tmp_path, secret_file, file, key, attack):
    folder = write_ptychodus_folder(scan, tmp_path / "run")
    if attack == "declared_huge" and key in ("probe_position_x_m", "probe_position_indexes", "indexes"):
        attack = "group"  # 1-d: declared-huge is covered by the 2-d keys; keep the case count
    replace_dataset(folder / file, key, attack, secret_file)
    tracemalloc.start()
    try:
        with deadline(), pytest.raises(READ_ERRORS) as error:
            read_scan(folder).validate(full=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_refused(error, key=key)
    assert peak < 64 * 1024**2, f"{peak / 1024**2:.0f} MiB allocated before refusing"


def test_the_secret_never_reaches_the_outputs_of_reconstruct(scan, tmp_path, secret_file, capsys):
    from ptychopinn.cli.main import main

    folder = write_ptychodus_folder(scan, tmp_path / "run")
    replace_dataset(folder / "product.h5", "probe", "external_storage", secret_file)
    code = main(["reconstruct", str(folder), "--output-dir", str(tmp_path / "out"), "--epochs", "1",
                 "--no-pretrained", "--ptychodus-product"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "external storage" in err and "'probe'" in err
    assert not (tmp_path / "out").exists()


def test_links_inside_the_inputs_folder_can_be_allowed(scan, tmp_path):
    """A detector's master file linking its data file beside it: refused unless asked for."""
    data_file = tmp_path / "data_000001.h5"
    with h5py.File(data_file, "w") as handle:
        handle["data"] = scan.get_patterns()
    master = tmp_path / "master.cxi"
    write_scan(scan, master)
    with h5py.File(master, "a") as handle:
        del handle[CXI_KEYS["data"]]
        handle[CXI_KEYS["data"]] = h5py.ExternalLink("data_000001.h5", "/data")
    with pytest.raises(ScanValidationError, match="external link to 'data_000001.h5"):
        read_scan(master)
    linked = read_scan(master, links_within_folder=True)
    np.testing.assert_array_equal(linked.get_patterns(), scan.get_patterns())


def test_allowed_links_still_never_leave_the_folder_or_open_a_pipe(scan, tmp_path, secret_file):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    for target in (str(fifo), str(secret_file), "../elsewhere/secret.bin"):
        path = tmp_path / "scan.cxi"
        write_scan(scan, path)
        with h5py.File(path, "a") as handle:
            del handle[CXI_KEYS["probe"]]
            handle[CXI_KEYS["probe"]] = h5py.ExternalLink(target, "/data")
        with deadline(), pytest.raises(ScanValidationError, match="external link"):
            read_scan(path, links_within_folder=True)


@pytest.mark.parametrize("suffix", [".npz", ".cxi", ".h5", ".yaml"])
def test_a_named_pipe_as_input_is_refused_at_once(tmp_path, suffix):
    fifo = tmp_path / f"scan{suffix}"
    os.mkfifo(fifo)
    with deadline(), pytest.raises(ScanFileError, match="named pipe"):
        read_scan(fifo)
    with deadline():
        assert not inspect_file(fifo).ok


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("diffraction.npy", "w", force_zip64=True) as member:
            header = np.lib.format.header_data_from_array_1_0(np.zeros((1,), np.float32))
            header["shape"] = (1000, 256, 256)
            np.lib.format.write_array_header_1_0(member, header)
            block = bytes(1 << 20)
            for _ in range(250):
                member.write(block)
        archive.writestr("xcoords.npy", b"")
    assert path.stat().st_size < 2 * 1024**2
    tracemalloc.start()
    try:
        with pytest.raises(ScanFileError, match="diffraction.npy.*declares 250 MiB but the file stores"):
            read_scan(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024**2


def test_the_read_limits_are_stated_and_adjustable(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.zeros(1000))
    with zipfile.ZipFile(path) as archive:
        check_zip_members(archive, str(path))
        with pytest.raises(ScanFileError, match="more than the 100 bytes"):
            check_zip_members(archive, str(path), limits=ReadLimits(max_array_bytes=100))


def test_npz_members_that_are_not_arrays_are_refused(scan, tmp_path):
    path = tmp_path / "scan.npz"
    write_scan(scan, path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("xcoords", b"raw bytes, not an array")
    with pytest.raises(ScanFileError, match="'xcoords': is not a .npy array"):
        read_scan(path)


def test_a_flipped_byte_in_a_memory_mapped_npz_is_caught_by_its_crc(scan, tmp_path):
    path = tmp_path / "scan.npz"
    write_scan(scan, path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("diffraction.npy")
    raw = bytearray(path.read_bytes())
    # a byte inside the array data, far past the member's local header and .npy header
    position = info.header_offset + 30 + len(info.filename) + 256 + info.file_size // 2
    raw[position] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ScanFileError, match="CRC-32 mismatch"):
        read_scan(path, lazy=True)
    with pytest.raises(READ_ERRORS):
        read_scan(path, lazy=False)


def test_open_hdf5_refuses_external_storage_without_reading_it(tmp_path, secret_file):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("leak", shape=(64,), dtype="u1", external=[(str(secret_file), 0, 64)])
    with pytest.raises(ScanValidationError, match="'leak': keeps its data in another file"):
        open_hdf5(path)


def test_a_named_pipe_is_never_opened_as_a_probe_or_ground_truth(scan, tmp_path):
    from ptychopinn.simulate.probes import probe_from_file
    from ptychopinn.workflows.evaluation import load_ground_truth
    from ptychopinn.workflows.training import read_probe_file

    fifo = tmp_path / "probe.npy"
    os.mkfifo(fifo)
    with deadline():
        with pytest.raises(READ_ERRORS):
            load_ground_truth(fifo)
        with pytest.raises(ValueError, match="named pipe"):
            read_probe_file(fifo, 16)
        with pytest.raises(READ_ERRORS):
            probe_from_file(fifo)


@pytest.mark.parametrize("bit", [0x1, 0x40, 0x20], ids=["encrypted", "strong-encryption", "patched-data"])
def test_npz_members_that_zipfile_cannot_open_are_clear_errors(scan, tmp_path, bit):
    """Flags zipfile refuses with RuntimeError or NotImplementedError: a clear error, never those."""
    path = tmp_path / "scan.npz"
    write_scan(scan, path)
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central flags
        start = raw.find(signature)
        while start >= 0:
            raw[start + offset] |= bit
            start = raw.find(signature, start + 4)
    path.write_bytes(bytes(raw))
    with pytest.raises(READ_ERRORS):
        read_scan(path)
