"""Live reconstruction: a growing CXI file, a folder of frame files, and ``ptychopinn watch``."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from ptychopinn.cli.main import main
from ptychopinn.config import RunConfig
from ptychopinn.data import input_scale
from ptychopinn.io import ScanFileError, read_scan
from ptychopinn.io.stream import END_MARKER, FolderSource, HDF5StreamSource, StreamWriter
from ptychopinn.models import build_module
from ptychopinn.workflows import save_model_bundle
from ptychopinn.workflows.live import LiveMosaic, WatchOptions, watch

TINY_MODEL = {"width": 4, "depth": 1, "modes": 4}


@pytest.fixture(scope="module")
def bundle(small_scan, tmp_path_factory):
    """An untrained gridsize-1 network for the small scan's probe (watch tests plumbing)."""
    torch.manual_seed(0)
    config = RunConfig().updated({"model": TINY_MODEL})
    module = build_module(
        config, size=small_scan.pattern_size, probe_modes=1, probe=torch.from_numpy(small_scan.probe_modes),
        input_scale=input_scale(small_scan),
    )  # fmt: skip
    path = tmp_path_factory.mktemp("bundle") / "model.zip"
    save_model_bundle(module, path, config)
    return path


def _write_stream(scan, path, *, rate_hz=None, block=4, stop_after=None, complete=True):
    with StreamWriter(path, probe=scan.probe, metadata=scan.metadata, obj=scan.object) as writer:
        n = scan.n_patterns if stop_after is None else stop_after
        for start in range(0, n, block):
            stop = min(start + block, n)
            writer.append(scan.diffraction[start:stop], scan.positions[start:stop])
            if rate_hz:
                time.sleep((stop - start) / rate_hz)
        if not complete:
            writer._handle.close()  # a writer that dies: the scan is never marked complete
            writer._handle = None


def test_a_growing_file_is_read_frame_by_frame_and_ends_as_an_ordinary_scan(small_scan, tmp_path):
    path = tmp_path / "live.cxi"
    writer = StreamWriter(path, probe=small_scan.probe, metadata=small_scan.metadata, obj=small_scan.object)
    source = HDF5StreamSource(path)
    assert source.poll(10) is None and not source.complete()
    writer.append(small_scan.diffraction[:5], small_scan.positions[:5])
    block = source.poll(3)  # a reader that asks for fewer gets the oldest first
    np.testing.assert_array_equal(block.counts, small_scan.diffraction[:3])
    assert source.backlog() == 2
    writer.append(small_scan.diffraction[5:], small_scan.positions[5:])
    rest = source.poll(1000)
    np.testing.assert_array_equal(rest.positions, small_scan.positions[3:])
    assert np.all(rest.written_at <= time.time()) and not source.complete()
    writer.close()
    assert source.complete()
    source.close()
    back = read_scan(path)  # the finished file is a CXI scan like any other
    np.testing.assert_allclose(back.diffraction, small_scan.diffraction)
    np.testing.assert_allclose(back.positions, small_scan.positions, atol=1e-9)
    with pytest.raises(ValueError, match="exists"):
        StreamWriter(path, probe=small_scan.probe, metadata=small_scan.metadata)


def test_a_half_written_frame_is_never_read(small_scan, tmp_path):
    path = tmp_path / "live.cxi"
    writer = StreamWriter(path, probe=small_scan.probe, metadata=small_scan.metadata)
    writer.append(small_scan.diffraction[:2], small_scan.positions[:2])
    writer._data.resize(3, axis=0)  # the third frame's counts are being written, its position not yet
    writer._data.flush()
    source = HDF5StreamSource(path)
    assert len(source.poll(10)) == 2 and source.poll(10) is None
    writer._data[2] = small_scan.diffraction[2]
    for dataset, value in ((writer._positions, small_scan.positions[2]), (writer._times, time.time())):
        dataset.resize(3, axis=0)
        dataset[2] = value
        dataset.flush()
    np.testing.assert_array_equal(source.poll(10).counts[0], small_scan.diffraction[2])
    writer.close()
    source.close()


def test_a_folder_source_takes_frames_in_any_order_and_waits_for_partial_files(small_scan, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    source = FolderSource(folder)
    order = [7, 3, 0, 5]  # out of order, one block of two frames
    for index in order:
        np.savez(folder / f"frame_{index:04d}.npz", diffraction=small_scan.diffraction[index],
                 positions=small_scan.positions[index])  # fmt: skip
    np.savez(folder / "block_0010.npz", diffraction=small_scan.diffraction[10:12],
             positions=small_scan.positions[10:12])  # fmt: skip
    whole = folder / "frame_0001.npz"
    np.savez(whole, diffraction=small_scan.diffraction[1], positions=small_scan.positions[1])
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) // 2])  # still being written
    block = source.poll(100)
    assert len(block) == 6 and source.unreadable() == ["frame_0001.npz"]
    got = {tuple(p) for p in block.positions}
    assert got == {tuple(small_scan.positions[i]) for i in (7, 3, 0, 5, 10, 11)}
    whole.write_bytes(data)  # finished: read at the next poll, not lost
    np.testing.assert_array_equal(source.poll(100).counts[0], small_scan.diffraction[1])
    assert not source.complete()
    (folder / END_MARKER).touch()
    assert source.complete() and source.received_scan(small_scan.probe).n_patterns == 7
    counts, positions = source.read_range(0, 7)  # revisiting frames reads their files again, in order
    np.testing.assert_array_equal(positions, np.concatenate([block.positions, small_scan.positions[1:2]]))
    np.testing.assert_array_equal(counts[:6], block.counts)


def test_the_mosaic_grows_in_every_direction_and_matches_stitching_at_once(small_scan):
    from ptychopinn.physics import probe_weight, stitch_patches

    weight = probe_weight(torch.from_numpy(small_scan.probe_modes))
    patches = torch.from_numpy(small_scan.patches if small_scan.patches is not None else
                               np.ones((small_scan.n_patterns, 32, 32), np.complex64))  # fmt: skip
    mosaic = LiveMosaic(weight, torch.device("cpu"), margin=0)
    order = np.argsort(-small_scan.positions.sum(axis=1))  # far corner first: the canvas grows up and left
    for chunk in np.array_split(order, 7):
        mosaic.add(patches[chunk], small_scan.positions[chunk])
    live, coverage = mosaic.picture()
    once = stitch_patches(patches, torch.from_numpy(small_scan.positions), weight)
    # both in the scan's frame: the reference canvas starts at 0, the mosaic at its origin
    ref, covered = once.object.numpy(), once.coverage.numpy()
    oy, ox = mosaic.origin
    assert oy <= 16 and ox <= 16  # it grew up and left from the far corner
    ys, xs = np.nonzero(covered)
    np.testing.assert_allclose(live[ys - oy, xs - ox], ref[ys, xs], atol=1e-5)
    assert coverage[ys - oy, xs - ox].all() and coverage.sum() == covered.sum()


def test_watch_follows_a_growing_file_and_finishes_with_a_reconstruction(
    small_scan, bundle, tmp_path, capsys
):
    path = tmp_path / "live.cxi"
    writer = threading.Thread(target=_write_stream, args=(small_scan, path), kwargs={"rate_hz": 200})
    writer.start()
    while not path.exists():
        time.sleep(0.01)
    time.sleep(0.1)
    options = WatchOptions(model=str(bundle), update_seconds=0.1, final_seconds=1.0, accelerator="cpu")
    result = watch(path, tmp_path / "out", options)
    writer.join()
    summary = result.summary
    assert summary["frames_received"] == summary["frames_reconstructed"] == small_scan.n_patterns
    assert not summary["stalled"] and summary["latency_median_s"] < 5
    for name in ("phase.png", "amplitude.png", "reconstruction.npz", "live.html", "live.json", "scan.npz"):
        assert (tmp_path / "out" / name).is_file(), name
    assert 'http-equiv="refresh"' in (tmp_path / "out" / "live.html").read_text()
    assert (
        json.loads((tmp_path / "out" / "live.json").read_text())["frames_received"] == small_scan.n_patterns
    )
    assert (tmp_path / "out" / "final" / "reconstruction.npz").is_file()
    assert result.final is not None and result.final.comparison is not None  # the stream carried the truth
    live = np.load(tmp_path / "out" / "reconstruction.npz")
    assert live["coverage"].sum() > 0 and np.isfinite(live["object"]).all()
    assert tuple(live["origin"]) == (0, 0)  # in the scan's frame, like any reconstruction.npz
    from ptychopinn.workflows import EvaluateOptions, evaluate

    judged = evaluate(tmp_path / "out", tmp_path / "eval", EvaluateOptions(ground_truth=path))
    assert judged.comparison is not None and np.isfinite(judged.comparison.phase.ssim)


def test_a_stalled_writer_is_reported_and_what_arrived_is_kept(small_scan, bundle, tmp_path):
    path = tmp_path / "live.cxi"
    _write_stream(small_scan, path, stop_after=20, complete=False)
    options = WatchOptions(model=str(bundle), update_seconds=0.2, idle_timeout_s=0.5, final_seconds=0.5,
                           accelerator="cpu")  # fmt: skip
    lines = []
    result = watch(path, tmp_path / "out", options, log=lines.append)
    assert result.summary["stalled"] and result.summary["frames_received"] == 20
    assert any("stalled" in line for line in lines)
    assert np.load(tmp_path / "out" / "scan.npz")["diffraction"].shape[0] == 20


def test_a_backlog_is_worked_off_in_blocks_with_bounded_memory(small_scan, bundle, tmp_path):
    """Bursts of 4 and 40 scans' worth of frames: read in blocks, none dropped, memory flat."""

    def peak_for(repeats: int) -> tuple[int, dict]:
        path = tmp_path / f"burst{repeats}.cxi"
        with StreamWriter(path, probe=small_scan.probe, metadata=small_scan.metadata) as writer:
            for k in range(repeats):
                writer.append(small_scan.diffraction, small_scan.positions + 0.25 * k)
        options = WatchOptions(
            model=str(bundle), update_seconds=30, max_block=16, final_seconds=0, accelerator="cpu"
        )
        tracemalloc.start()
        result = watch(path, tmp_path / f"out{repeats}", options)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.summary["frames_reconstructed"] == repeats * small_scan.n_patterns
        assert result.summary["max_backlog"] > 16  # the reader fell behind and caught up
        return peak, result.summary

    small, _ = peak_for(4)
    large, _ = peak_for(40)
    more_data = 36 * small_scan.diffraction.nbytes  # 7 MB more frames
    assert large - small < more_data / 10, f"peak grew by {large - small} bytes for {more_data} more"


def test_watch_refines_in_the_background(small_scan, bundle, tmp_path):
    path = tmp_path / "live.cxi"
    pace = {"rate_hz": 40, "block": 2}
    writer = threading.Thread(target=_write_stream, args=(small_scan, path), kwargs=pace)
    writer.start()
    while not path.exists():
        time.sleep(0.01)
    time.sleep(0.1)
    options = WatchOptions(
        model=str(bundle), refine=True, refine_probe=True, refine_seconds=0.2, refine_window=32,
        update_seconds=0.2, final_seconds=0, accelerator="cpu",
    )  # fmt: skip
    result = watch(path, tmp_path / "out", options)
    writer.join()
    summary = result.summary
    assert summary["frames_reconstructed"] == small_scan.n_patterns
    assert summary["refinement_rounds"] >= 1 and summary["refined_pixels"] > 0
    assert summary["refinement_error"] is None and summary["probe_change"] > 0  # the probe moved
    with pytest.raises(ValueError, match="refine_probe needs refine"):
        WatchOptions(refine_probe=True)


def test_simulate_streams_and_watch_follows_from_the_command_line(bundle, tmp_path, capsys):
    path = tmp_path / "stream.cxi"
    args = ["simulate", "--stream-to", str(path), "--rate", "400", "-N", "32", "--n-positions", "36",
            "--step", "5", "--photons", "1e4", "--object", "dead_leaves", "--seed", "3"]  # fmt: skip
    writer = threading.Thread(target=main, args=(args,))
    writer.start()
    while not path.exists():
        time.sleep(0.01)
    time.sleep(0.1)
    code = main(["watch", str(path), "--model", str(bundle), "--output-dir", str(tmp_path / "out"),
                 "--update-seconds", "0.2", "--final-seconds", "0", "--accelerator", "cpu"])  # fmt: skip
    writer.join()
    assert code == 0
    out = capsys.readouterr().out
    assert "frames received 36" in out and "wrote" in out
    assert (tmp_path / "out" / "phase.png").is_file()
    with h5py.File(path, "r") as handle:
        assert handle["entry_1/ptychopinn/complete"][0] == 1


def test_watch_finds_the_shipped_network_for_the_probe_or_says_what_to_give(small_scan, tmp_path):
    from ptychopinn.simulate import SimulationConfig, simulate_scan

    focused = simulate_scan(SimulationConfig(pattern_size=64, n_positions=16, seed=1), progress=False)
    path = tmp_path / "focused.cxi"
    _write_stream(focused, path)
    options = WatchOptions(update_seconds=10, final_seconds=0, accelerator="cpu")
    result = watch(path, tmp_path / "out", options)  # the simulator's probe: the shipped network
    assert result.summary["frames_reconstructed"] == 16
    other = tmp_path / "other.cxi"
    _write_stream(small_scan, other)  # N = 32: no shipped network
    with pytest.raises(ValueError, match="no shipped pretrained network matches .*; give --model"):
        watch(other, tmp_path / "out2", options)
    assert not (tmp_path / "out2").exists()  # refused before claiming the folder


def test_batches_are_padded_to_a_few_sizes():
    from ptychopinn.models.batching import bucket_sizes, padded

    assert bucket_sizes(128) == [1, 2, 4, 8, 16, 32, 64, 128]
    x = torch.rand(37, 1, 8, 8)
    out = padded(x, 128)
    assert out.shape == (64, 1, 8, 8) and torch.equal(out[:37], x) and not out[37:].any()
    assert padded(x[:32], 128) is not None and padded(x[:32], 128).shape[0] == 32
    assert padded(torch.rand(100, 2), 100).shape[0] == 100  # the largest bucket is the block itself


def test_watch_started_before_the_scan_waits_for_its_file(small_scan, bundle, tmp_path):
    path = tmp_path / "later.cxi"

    def later() -> None:
        time.sleep(0.5)
        _write_stream(small_scan, path, rate_hz=500)

    writer = threading.Thread(target=later)
    writer.start()
    lines = []
    options = WatchOptions(model=str(bundle), update_seconds=1, final_seconds=0, accelerator="cpu")
    result = watch(path, tmp_path / "out", options, log=lines.append)
    writer.join()
    assert result.summary["frames_reconstructed"] == small_scan.n_patterns
    assert any("waiting for" in line for line in lines)
    never = WatchOptions(model=str(bundle), idle_timeout_s=0.3, final_seconds=0, accelerator="cpu")
    with pytest.raises(ScanFileError, match="did not appear within 0.3 s"):
        watch(tmp_path / "never.cxi", tmp_path / "out2", never, log=lines.append)


def test_every_watch_and_stream_flag_reaches_the_run(bundle, tmp_path, capsys):
    path = tmp_path / "stream.cxi"
    simulate = ["simulate", "--stream-to", str(path), "--rate", "2000", "--block", "3", "-N", "32",
                "--n-positions", "36", "--step", "5", "--photons", "1e4", "--seed", "3"]  # fmt: skip
    assert main(simulate) == 0
    with h5py.File(path, "r") as handle:  # --block 3: frames written three at a time
        times = handle["entry_1/ptychopinn/timestamps"][:]
    assert len(np.unique(times)) == 12 and np.all(times[::3] == times[2::3])
    out = tmp_path / "out"
    code = main(["watch", str(path), "--model", str(bundle), "--output-dir", str(out), "--frames", "30",
                 "--max-block", "4", "--refine", "--refine-probe", "--refine-window", "8",
                 "--update-seconds", "0.3", "--idle-timeout", "5", "--final-seconds", "0",
                 "--data-key", "entry_1/instrument_1/detector_1/data",
                 "--positions-key", "entry_1/ptychopinn/positions_px", "--accelerator", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    live = json.loads((out / "live.json").read_text())
    assert live["frames_reconstructed"] == 30  # --frames
    assert live["max_backlog"] >= 30 - 4  # --max-block 4: a burst of 36 worked off four at a time
    ran_with = (live["refine"], live["refine_probe"], live["refine_window"], live["block_size"])
    assert ran_with == (True, True, 8, 4)
    assert live["refinement_error"] is None
    assert not (out / "final").exists()  # --final-seconds 0
    code = main(["watch", str(path), "--model", str(bundle), "--output-dir", str(tmp_path / "o2"),
                 "--data-key", "nothing/here", "--accelerator", "cpu", "--idle-timeout", "0.2"])  # fmt: skip
    assert code == 2 and "has no dataset 'nothing/here'" in capsys.readouterr().err


def test_a_source_that_can_never_be_followed_is_refused_at_once(bundle, tmp_path):
    npz = tmp_path / "scan.npz"
    np.savez(npz, x=np.zeros(3))
    options = WatchOptions(model=str(bundle), idle_timeout_s=30, final_seconds=0, accelerator="cpu")
    started = time.perf_counter()
    with pytest.raises(ScanFileError, match="cannot follow it as a growing HDF5 file"):
        watch(npz, tmp_path / "out", options)
    assert time.perf_counter() - started < 10  # not after the 30 s timeout
    assert not (tmp_path / "out").exists()
