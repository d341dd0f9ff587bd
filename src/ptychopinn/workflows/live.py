"""Live reconstruction during a scan: ``ptychopinn watch``.

A trained network bundle predicts each frame as it arrives (whatever has arrived since the
last pass goes through the network as one batch: a frame at a time costs as much as a block,
docs/benchmarks.md, "GPU check") and the patches are stitched at once into a running mosaic
whose canvas grows with the scan. With ``refine``, a background thread keeps refining the
region of the most recent frames through the physics (the refinement engine, warm-started from
the current picture) and hands the improved region back. Every ``update_seconds`` the current
``phase.png``, ``amplitude.png``, ``reconstruction.npz`` and a self-refreshing ``live.html``
are written atomically and one status line is printed. The watch ends when the source says
the scan is complete, after ``frames`` frames, or after ``idle_timeout_s`` without a new frame
(a stalled writer: reported, and what arrived is kept); then a final ``reconstruct`` of the
received scan writes the usual outputs and report into ``OUTPUT_DIR/final``.

The live ``reconstruction.npz`` holds ``object``, ``amplitude``, ``phase``, ``coverage`` and
``weight_sum`` in the scan's frame, as every ``reconstruction.npz`` does (``evaluate`` reads
it); ``origin`` beside them is ``(0, 0)``, or, for a scan with positions below ``N/2``, the
scan pixel that the canvas's pixel ``(0, 0)`` shows.

Memory stays bounded in the scan's length: frames are read block by block and dropped once
stitched; only the mosaic (and, with ``refine``, the last ``refine_window`` frames) is kept.
"""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ACCELERATORS, DeviceOptions
from ..io import ScanFileError, atomic_path, write_json, write_npz
from ..io.reconstruction import write_reconstruction_npz
from ..io.safety import HDF5_SIGNATURE
from ..io.stream import open_stream
from ..models.batching import bucket_sizes, padded
from ..options import Options, option
from ..physics import GrowingStitcher, probe_weight
from ..refine import RefinementConfig, refine_object
from .bundles import load_model_bundle, resolve_device
from .inference import AUTO_PATTERNS
from .pretrained import matching_bundle
from .results import WatchResult
from .run_folder import claim_output_folder

OUTPUTS = ("phase.png", "amplitude.png", "reconstruction.npz", "live.html", "live.json", "scan.npz", "final")


@dataclass(frozen=True)
class WatchOptions(Options):
    """Options of :func:`watch`.

    Attributes
    ----------
    model : str or None
        The network bundle (gridsize 1) that predicts each frame; None: the shipped pretrained
        network made for the source's probe.
    update_seconds : float
        Interval between written pictures and status lines (s).
    refine : bool
        Refine the region of the most recent frames through the physics in the background.
    refine_window : int
        Frames the background refinement revisits (the memory it holds).
    refine_probe : bool
        The background refinement also refines the probe (carried from round to round; the
        network keeps its own).
    refine_seconds : float
        Length of one background refinement round (s).
    frames : int or None
        End after this many frames.
    idle_timeout_s : float
        End when no frame has arrived for this long (a stalled writer, reported).
    max_block : int or None
        Most frames per network pass (a backlog is worked off in blocks, never dropped).
        Default: by device and N (:func:`live_block_size`).
    final_seconds : float
        Refinement budget of the final ``reconstruct`` (0: none, the live result only).
    accelerator : str
        ``auto``, ``cpu``, ``gpu``, ``cuda``, ``mps``.
    poll_seconds : float
        Wait between looks at the source when nothing has arrived.
    data_key, positions_key : str or None
        The growing datasets of an HDF5 source not written by ``simulate --stream-to``.
    """

    section = "watch"
    model: str | None = option(
        None, "network bundle (gridsize 1) predicting each frame", flags=("--model",), path=True,
        default_text="the shipped pretrained network, when it matches the source's probe",
    )  # fmt: skip
    update_seconds: float = option(
        2.0, "interval of pictures and status lines", flags=("--update-seconds",), metavar="SECONDS",
        minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    refine: bool = option(
        False, "refine the most recent frames' region through the physics in the background",
        flags=("--refine",),
    )  # fmt: skip
    refine_window: int = option(
        512, "frames the background refinement revisits", flags=("--refine-window",), metavar="FRAMES",
        minimum=1,
    )  # fmt: skip
    refine_probe: bool = option(
        False, "with --refine: the background refinement also refines the probe", flags=("--refine-probe",)
    )
    refine_seconds: float = option(
        3.0, "length of one background refinement round", minimum=0.0, exclusive_minimum=True
    )
    frames: int | None = option(None, "end after this many frames", flags=("--frames",), minimum=1)
    idle_timeout_s: float = option(
        30.0, "end when no frame arrived for this long: a stalled writer", flags=("--idle-timeout",),
        metavar="SECONDS", minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    max_block: int | None = option(
        None, "most frames per network pass", flags=("--max-block",), metavar="FRAMES", minimum=1,
        default_text="by device and N; 128 at N = 64 on a CPU",
    )  # fmt: skip
    final_seconds: float = option(
        30.0, "refinement budget of the final reconstruct; 0: none", flags=("--final-seconds",),
        metavar="SECONDS", minimum=0.0, maximum=1e9, exclusive_maximum=True,
    )  # fmt: skip
    accelerator: str = option(
        "auto", "auto (a GPU when present), cpu, gpu, cuda, mps", flags=("--accelerator", "--device"),
        choices=ACCELERATORS, default_text="",
    )  # fmt: skip
    poll_seconds: float = option(
        0.01, "wait between looks at the source when nothing arrived", minimum=0.0, exclusive_minimum=True
    )
    data_key: str | None = option(
        None, "HDF5 source: the growing (n, N, N) counts", flags=("--data-key",), default_text="CXI's"
    )
    positions_key: str | None = option(
        None, "HDF5 source: the growing (n, 2) (y, x) positions in object pixels", flags=("--positions-key",)
    )

    def check(self) -> None:
        if self.refine_probe and not self.refine:
            raise ValueError("watch.refine_probe needs refine = True (--refine)")


def live_block_size(device: torch.device, size: int) -> int:
    """Frames per network pass: the inference batch for the device, in N = 128 patterns.

    On a CPU small batches stay in cache (at N = 128, 32 patterns per pass were 4.8x faster
    than 1024, docs/benchmarks.md); a smaller N takes proportionally more frames.
    """
    patterns = AUTO_PATTERNS.get(device.type, 256)
    return int(min(4096, max(1, patterns * max(1, (128 // size) ** 2))))


class _Refiner(threading.Thread):
    """Background refinement through the physics, warm-started from the current picture.

    Rounds alternate between the newest ``refine_window`` frames (where the scan is now) and a
    sweep over the older ones, so that by the end every region has been revisited. Frames are
    read again from the source for each round: the refiner holds one window, not the scan.
    """

    def __init__(self, watch_state: _WatchState):
        super().__init__(daemon=True, name="ptychopinn-watch-refine")
        self.state = watch_state
        self.stop = threading.Event()
        self.rounds = 0
        self.error: str | None = None

    def _next_range(self, received: int, sweep: int, newest: bool) -> tuple[int, int, int]:
        window = self.state.options.refine_window
        if newest or received <= window:
            return max(0, received - window), received, sweep
        if sweep >= received - window:
            sweep = 0
        return sweep, min(sweep + window, received), min(sweep + window, received)

    def run(self) -> None:
        state = self.state
        sweep, newest = 0, True
        while not self.stop.is_set():
            with state.lock:
                received = state.received
            if received == 0:
                self.stop.wait(0.1)
                continue
            start, stop, sweep = self._next_range(received, sweep, newest)
            newest = not newest
            try:
                counts, positions = state.read_range(start, stop)
                with state.lock:
                    obj, coverage = state.mosaic.picture()
                    origin = state.mosaic.origin.copy()
                # the frames' region on the current canvas, the picture as the start; the probe
                # calibrated to these counts (a network's probe may be in any scale)
                begin = np.where(coverage, obj, 1).astype(np.complex64)
                # preconditioned: minibatch PIE/LSQML-class updates move the object from the first
                # minibatch, where L-BFGS spends a short round on its first line searches
                config = RefinementConfig(
                    optimizer="preconditioned", epochs=1000, time_budget_s=state.options.refine_seconds,
                    refine_probe=state.options.refine_probe,
                )  # fmt: skip
                result = refine_object(counts, positions - origin, state.probe, begin, config=config,
                                       remove_ramp=False)  # fmt: skip
                with state.lock, torch.no_grad():
                    state.mosaic.hand_over(result.object, result.illumination, origin)
                    if state.options.refine_probe:  # the next round starts from this probe
                        state.probe = np.asarray(result.probe, dtype=np.complex64)
            except Exception as exc:  # noqa: BLE001 - reported at the end; the network's picture stays
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.rounds += 1


@dataclass
class _WatchState:
    options: WatchOptions
    mosaic: GrowingStitcher
    probe: np.ndarray
    lock: threading.Lock
    read_range: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    received: int = 0


def _probe_change(probe: np.ndarray, reference: np.ndarray) -> float:
    """``1 - |<P, Q>| / (|P| |Q|)`` over all modes present in both (0: the same up to scale)."""
    a = np.asarray(probe).reshape(-1, *probe.shape[-2:])[0].ravel()
    b = np.asarray(reference).reshape(-1, *reference.shape[-2:])[0].ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - abs(np.vdot(a, b)) / norm if norm > 0 else 0.0


def _in_scan_frame(
    obj: np.ndarray, coverage: np.ndarray, weight_sum: np.ndarray, origin: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The live canvas moved into the scan's frame (pixel (0, 0) at the scan's origin), as every
    ``reconstruction.npz`` is, so ``evaluate`` reads it; kept as it is (with its ``origin``) when
    that would cut covered pixels (a scan with positions below N/2)."""
    oy, ox = (int(v) for v in origin)
    if (oy < 0 and coverage[:-oy].any()) or (ox < 0 and coverage[:, :-ox].any()):
        return obj, coverage, weight_sum, origin
    arrays = []
    for values in (obj, coverage, weight_sum):
        values = values[max(0, -oy) :, max(0, -ox) :]
        arrays.append(np.pad(values, ((max(0, oy), 0), (max(0, ox), 0))))
    return arrays[0], arrays[1], arrays[2], np.zeros(2, dtype=np.int64)


def _png(path: Path, image: np.ndarray, mask: np.ndarray, cmap: str) -> None:
    """A quick picture (no axes): the live view is redrawn every few seconds."""
    from matplotlib import colormaps
    from PIL import Image

    shown = image[mask] if mask.any() else np.zeros(1)
    low, high = np.percentile(shown, [0.5, 99.5]) if shown.size > 1 else (0.0, 1.0)
    scaled = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    rgba = (colormaps[cmap](scaled) * 255).astype(np.uint8)
    rgba[~mask] = 255
    with atomic_path(path) as tmp:
        Image.fromarray(rgba).save(tmp, format="PNG")


def _live_html(status: dict, refresh_s: float) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in status.items()
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" '
        f'content="{max(1, round(refresh_s))}"><title>ptychopinn watch</title></head><body>'
        f"<h1>ptychopinn watch</h1><table>{rows}</table>"
        '<p><img src="phase.png" alt="phase"> <img src="amplitude.png" alt="amplitude"></p>'
        "</body></html>"
    )


@dataclass
class _Network:
    """The network of a watch, on its device, with every batch shape it will meet prepared."""

    path: str
    module: torch.nn.Module
    size: int
    block_size: int
    scale: float | None  # None: per-scan normalisation, from the first frames

    @classmethod
    def load(cls, path: str, device: torch.device, max_block: int | None) -> _Network:
        loaded = load_model_bundle(path)
        if loaded.gridsize != 1:
            raise ValueError(
                f"{path}: watch needs a gridsize-1 network; this one has gridsize {loaded.gridsize}"
            )
        if int(loaded.manifest.get("config", {}).get("data", {}).get("detector_bin", 1)) != 1:
            raise ValueError(f"{path}: watch takes networks trained on unbinned patterns")
        module = loaded.module.to(device).eval()
        size = int(module.hparams.size)
        block_size = max_block or live_block_size(device, size)
        # on a GPU, batches are padded to a few sizes, each prepared now (a new shape costs its
        # FFT plans and kernel choices when first met); a CPU takes any size
        buckets = bucket_sizes(block_size) if device.type == "cuda" else [1, block_size]
        with torch.no_grad():
            for frames in buckets:
                module.net.predict_patches(
                    torch.zeros(frames, 1, size, size, device=device),
                    torch.zeros(frames, 1, 2, device=device),
                )
        per_scan = module.hparams.get("input_normalisation", "frozen") == "per_scan"
        return cls(str(path), module, size, block_size, None if per_scan else float(module.input_scale))


def _may_become_followable(path: Path) -> bool:
    """A folder, an empty file or an HDF5 file (its writer not yet in SWMR mode)."""
    if path.is_dir():
        return True
    with open(path, "rb") as handle:
        head = handle.read(8)
    return len(head) < 8 or head == HDF5_SIGNATURE


def _open_when_ready(source: str | Path, keys: dict, timeout_s: float, log: Callable[[str], None]):
    """The source, waited for up to ``timeout_s`` when it does not exist yet (watch started first)."""
    deadline = time.time() + timeout_s
    told = False
    while True:
        if Path(source).exists():
            try:
                return open_stream(source, **keys)
            except ScanFileError:
                # an HDF5 file being created (or an empty one) may become followable; any
                # other file will not: say so now, not after the timeout
                if time.time() > deadline or not _may_become_followable(Path(source)):
                    raise
        elif time.time() > deadline:
            raise ScanFileError(f"did not appear within {timeout_s:g} s (--idle-timeout)", source=str(source))
        if not told:
            log(f"watch: waiting for {source}")
            told = True
        time.sleep(0.05)


def _network_for(model: str | None, probe: np.ndarray | None) -> str:
    """The bundle to use: the one given, else a shipped pretrained network made for the probe."""
    if model:
        return str(model)
    if probe is None:
        raise ValueError("give --model: the source holds no probe to find a shipped network for")
    match = matching_bundle(probe, gridsize=1)
    if match is None:
        raise ValueError(
            "no shipped pretrained network matches the scan's probe; give --model BUNDLE "
            "(from train or pretrain)"
        )
    return str(match)


def watch(
    source: str | Path,
    output_dir: str | Path,
    options: WatchOptions,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> WatchResult:
    """Follow a scan while it is written and keep a reconstruction of everything seen so far.

    Parameters
    ----------
    source : path
        A growing HDF5/CXI file (:class:`~ptychopinn.io.stream.HDF5StreamSource`) or a folder
        receiving frame files (:class:`~ptychopinn.io.stream.FolderSource`).
    output_dir : path
        Live outputs (``phase.png``, ``amplitude.png``, ``reconstruction.npz``, ``live.html``,
        ``live.json``), the received scan (``scan.npz``) and the final reconstruction
        (``final/``).
    options : WatchOptions
    overwrite : bool
        Replace an earlier run's outputs in ``output_dir``.
    log : callable
        Receives the status lines.

    Returns
    -------
    WatchResult
    """
    from .reconstruction import ReconstructOptions, reconstruct

    keys = {k: v for k, v in (("data_key", options.data_key), ("positions_key", options.positions_key)) if v}
    device = resolve_device(options.accelerator)
    # with a given network, everything slow (loading, the first passes) happens before the
    # first frame can arrive; the shipped network is chosen from the source's probe
    network = _Network.load(options.model, device, options.max_block) if options.model else None
    stream = _open_when_ready(source, keys, options.idle_timeout_s, log)
    try:
        if network is None:
            network = _Network.load(_network_for(None, stream.probe()), device, options.max_block)
        out = claim_output_folder(
            output_dir, command="watch", overwrite=overwrite, inputs=[source, network.path]
        )
    except BaseException:
        stream.close()
        raise
    model, module, size, block_size = network.path, network.module, network.size, network.block_size
    probe = module.net.forward_model.probe.detach()
    scale = network.scale
    state = _WatchState(
        options=options,
        mosaic=GrowingStitcher(probe_weight(probe), device),
        probe=probe.cpu().numpy(),
        lock=threading.Lock(),
        read_range=stream.read_range,
    )
    initial_probe = state.probe.copy()
    refiner = _Refiner(state) if options.refine else None
    if refiner is not None:
        refiner.start()
    latencies: list[np.ndarray] = []
    started = time.time()
    last_arrival = last_write = started
    first_frame_at: float | None = None
    reconstructed, max_backlog, stalled = 0, 0, False

    def status() -> dict:
        lat = np.concatenate(latencies) if latencies else np.zeros(0)
        elapsed = max(time.time() - started, 1e-9)
        # the rate counts from the first frame: waiting for the scan to start is not slowness
        since_first = max(time.time() - first_frame_at, 1e-9) if first_frame_at else elapsed
        return {
            "frames_received": state.received,
            "frames_reconstructed": reconstructed,
            "frames_per_second": reconstructed / since_first,
            "latency_median_s": float(np.median(lat)) if lat.size else None,
            "latency_p99_s": float(np.percentile(lat, 99)) if lat.size else None,
            "backlog": stream.backlog(),
            "max_backlog": max_backlog,
            "refine": options.refine,
            "refine_probe": options.refine_probe,
            "refine_window": options.refine_window,
            "block_size": block_size,
            "refinement_rounds": refiner.rounds if refiner else 0,
            "refined_pixels": int((state.mosaic.refined_weight > 0).sum()),
            "refinement_error": refiner.error if refiner else None,
            # relative to the network's probe (scale aside): how far --refine-probe moved it
            "probe_change": _probe_change(state.probe, initial_probe),
            "elapsed_s": elapsed,
            "stalled": stalled,
        }

    def write(final: bool = False) -> dict:
        with state.lock:
            obj, coverage = state.mosaic.picture()
            origin = state.mosaic.origin.copy()
            weight_sum = state.mosaic.weight_sum()
        obj, coverage, weight_sum, origin = _in_scan_frame(obj, coverage, weight_sum, origin)
        now = status()
        if obj.size:
            _png(
                out / "phase.png",
                np.angle(obj),
                coverage,
                "twilight" if np.ptp(np.angle(obj[coverage])) > 5.5 else "viridis",
            )
            _png(out / "amplitude.png", np.abs(obj), coverage, "gray")
            write_reconstruction_npz(
                out / "reconstruction.npz", obj, coverage=coverage, weight_sum=weight_sum,
                extra_arrays={"origin": origin},
            )  # fmt: skip
        write_json(out / "live.json", now)
        with atomic_path(out / "live.html") as tmp:
            tmp.write_text(_live_html(now, options.update_seconds if not final else 3600))
        latency = (
            "-"
            if now["latency_median_s"] is None
            else f"{now['latency_median_s']:.3f} s (p99 {now['latency_p99_s']:.3f} s)"
        )
        log(
            f"watch: {now['elapsed_s']:.1f} s, frames received {now['frames_received']}, reconstructed "
            f"{now['frames_reconstructed']}, {now['frames_per_second']:.1f} frames/s, latency {latency}, "
            f"backlog {now['backlog']}"
        )
        return now

    try:
        with torch.no_grad():  # not inference_mode: the refiner's thread updates the mosaic too
            while True:
                left = options.frames - state.received if options.frames is not None else block_size
                block = stream.poll(min(block_size, left))
                now = time.time()
                if block is not None and len(block):
                    last_arrival = now
                    first_frame_at = first_frame_at or now
                    if block.counts.shape[-1] != size:
                        raise ValueError(
                            f"{source}: frames of {block.counts.shape[-1]} pixels; the network takes {size}"
                        )
                    if scale is None:  # per-scan normalisation from the first frames
                        scale = float(
                            np.sqrt((size / 2) ** 2 / max(block.counts.sum(axis=(1, 2)).mean(), 1e-12))
                        )
                    x = torch.from_numpy(block.counts).to(device).clamp_min(0).sqrt().mul(scale)[:, None]
                    if device.type == "cuda":
                        x = padded(x, block_size)
                    offsets = torch.zeros(len(x), 1, 2, dtype=torch.float32, device=device)
                    patches = module.net.predict_patches(x, offsets)[: len(block), 0]
                    with state.lock:
                        state.mosaic.add(patches, block.positions)
                        state.received += len(block)
                    reconstructed += len(block)
                    latencies.append(time.time() - block.written_at)
                    max_backlog = max(max_backlog, stream.backlog())
                else:
                    time.sleep(options.poll_seconds)
                if time.time() - last_write >= options.update_seconds:
                    write()
                    last_write = time.time()
                if stream.complete() or (options.frames is not None and state.received >= options.frames):
                    break
                if time.time() - last_arrival > options.idle_timeout_s:
                    stalled = True
                    log(
                        f"watch: no new frame for {options.idle_timeout_s:g} s: the writer stalled; keeping "
                        f"the {state.received} frame(s) received"
                    )
                    break
    finally:
        if refiner is not None:
            refiner.stop.set()
            refiner.join(timeout=options.refine_seconds + 30)
    summary = write(final=True)
    if refiner is not None and refiner.error:
        log(f"watch: background refinement stopped: {refiner.error}")
    files = {
        name: out / name
        for name in ("phase.png", "amplitude.png", "reconstruction.npz", "live.html", "live.json")
    }
    final = None
    if state.received and options.final_seconds > 0:
        scan = stream.received_scan(state.probe)
        write_npz(scan, out / "scan.npz")
        files["scan.npz"] = out / "scan.npz"
        final_options = ReconstructOptions(
            model=None if model is None else os.fspath(model),
            refinement=RefinementConfig(epochs=100000, time_budget_s=options.final_seconds),
            device=DeviceOptions(accelerator=options.accelerator), progress=False,
        )  # fmt: skip
        final = reconstruct(out / "scan.npz", out / "final", final_options, log=log)
        files.update({f"final/{k}": v for k, v in final.files.items()})
    stream.close()
    return WatchResult(output_dir=out, summary=summary, files=files, final=final)


#: the live mosaic (kept under the name the watch tests use)
LiveMosaic = GrowingStitcher
