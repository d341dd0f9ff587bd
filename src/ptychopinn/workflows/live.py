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

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common import ACCELERATORS, DeviceOptions, output_dir_option
from ..io import write_npz
from ..models.batching import padded
from ..options import Options, option
from ..physics import GrowingStitcher, probe_weight
from ..physics.forward_models import Geometry
from ..refine import RefinementConfig, refine_object
from .bundles import resolve_device
from .live_output import LIVE_FILES, mosaic_arrays, write_live
from .live_source import LiveNetwork, network_for, open_when_ready
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
                    refine_probe=state.options.refine_probe, **state.detector,
                )  # fmt: skip
                result = refine_object(counts, positions - origin, state.probe, begin, config=config,
                                       remove_ramp=False, geometry=state.geometry)  # fmt: skip
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
    #: the network's forward model (``forward_model``, ``forward_model_options``) and geometry:
    #: the background and the final refinement go through the physics the network was made for
    detector: dict = field(default_factory=dict)
    geometry: Geometry | None = None


def _probe_change(probe: np.ndarray, reference: np.ndarray) -> float:
    """``1 - |<P, Q>| / (|P| |Q|)`` over all modes present in both (0: the same up to scale)."""
    a = np.asarray(probe).reshape(-1, *probe.shape[-2:])[0].ravel()
    b = np.asarray(reference).reshape(-1, *reference.shape[-2:])[0].ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - abs(np.vdot(a, b)) / norm if norm > 0 else 0.0


class _LiveLoop:
    """The watch loop: predict each block of arrived frames, stitch it, write now and then.

    Holds the counters its status reports; :meth:`run` returns when the writer marks the
    scan complete, after ``frames``, or after ``idle_timeout_s`` without a frame (stalled).
    """

    def __init__(self, state: _WatchState, stream: Any, network: LiveNetwork, out: Path, device: torch.device,
                 log: Callable[[str], None], source: str | Path):  # fmt: skip
        self.state, self.stream, self.network, self.out, self.device, self.log = (
            state, stream, network, out, device, log
        )  # fmt: skip
        self.source = source
        self.options = state.options
        self.scale = network.scale
        self.initial_probe = state.probe.copy()
        self.refiner = _Refiner(state) if self.options.refine else None
        self.latencies: list[np.ndarray] = []
        self.started = time.time()
        self.first_frame_at: float | None = None
        self.reconstructed, self.max_backlog, self.stalled = 0, 0, False

    def status(self) -> dict:
        lat = np.concatenate(self.latencies) if self.latencies else np.zeros(0)
        elapsed = max(time.time() - self.started, 1e-9)
        # the rate counts from the first frame: waiting for the scan to start is not slowness
        since_first = max(time.time() - self.first_frame_at, 1e-9) if self.first_frame_at else elapsed
        refiner, options = self.refiner, self.options
        return {
            "frames_received": self.state.received,
            "frames_reconstructed": self.reconstructed,
            "frames_per_second": self.reconstructed / since_first,
            "latency_median_s": float(np.median(lat)) if lat.size else None,
            "latency_p99_s": float(np.percentile(lat, 99)) if lat.size else None,
            "backlog": self.stream.backlog(),
            "max_backlog": self.max_backlog,
            "refine": options.refine,
            "refine_probe": options.refine_probe,
            "refine_window": options.refine_window,
            "block_size": self.network.block_size,
            "refinement_rounds": refiner.rounds if refiner else 0,
            "refined_pixels": int((self.state.mosaic.refined_weight > 0).sum()),
            "refinement_error": refiner.error if refiner else None,
            # relative to the network's probe (scale aside): how far --refine-probe moved it
            "probe_change": _probe_change(self.state.probe, self.initial_probe),
            "elapsed_s": elapsed,
            "stalled": self.stalled,
        }

    def write(self, final: bool = False) -> dict:
        with self.state.lock:
            arrays = mosaic_arrays(self.state.mosaic)
        now = self.status()
        write_live(self.out, arrays, now, self.options.update_seconds if not final else 3600, self.log)
        return now

    def take(self, block) -> None:
        """Predict one block of frames and stitch it into the mosaic."""
        size, module = self.network.size, self.network.module
        if block.counts.shape[-1] != size:
            pixels = block.counts.shape[-1]
            raise ValueError(f"{self.source}: frames of {pixels} pixels; the network takes {size}")
        if self.scale is None:  # per-scan normalisation from the first frames
            self.scale = float(np.sqrt((size / 2) ** 2 / max(block.counts.sum(axis=(1, 2)).mean(), 1e-12)))
        x = torch.from_numpy(block.counts).to(self.device).clamp_min(0).sqrt().mul(self.scale)[:, None]
        if self.device.type == "cuda":
            x = padded(x, self.network.block_size)
        offsets = torch.zeros(len(x), 1, 2, dtype=torch.float32, device=self.device)
        patches = module.net.predict_patches(x, offsets)[: len(block), 0]
        with self.state.lock:
            self.state.mosaic.add(patches, block.positions)
            self.state.received += len(block)
        self.reconstructed += len(block)
        self.latencies.append(time.time() - block.written_at)
        self.max_backlog = max(self.max_backlog, self.stream.backlog())

    def run(self) -> dict:
        """Follow the source to its end; the final status (its files written)."""
        options, state = self.options, self.state
        last_arrival = last_write = self.started
        if self.refiner is not None:
            self.refiner.start()
        try:
            with torch.no_grad():  # not inference_mode: the refiner's thread updates the mosaic too
                while True:
                    block_size = self.network.block_size
                    left = options.frames - state.received if options.frames is not None else block_size
                    block = self.stream.poll(min(block_size, left))
                    if block is not None and len(block):
                        last_arrival = time.time()
                        self.first_frame_at = self.first_frame_at or last_arrival
                        self.take(block)
                    else:
                        time.sleep(options.poll_seconds)
                    if time.time() - last_write >= options.update_seconds:
                        self.write()
                        last_write = time.time()
                    enough = options.frames is not None and state.received >= options.frames
                    if self.stream.complete() or enough:
                        break
                    if time.time() - last_arrival > options.idle_timeout_s:
                        self.stalled = True
                        self.log(
                            f"watch: no new frame for {options.idle_timeout_s:g} s: the writer stalled; "
                            f"keeping the {state.received} frame(s) received"
                        )
                        break
        finally:
            if self.refiner is not None:
                self.refiner.stop.set()
                self.refiner.join(timeout=options.refine_seconds + 30)
        summary = self.write(final=True)
        if self.refiner is not None and self.refiner.error:
            self.log(f"watch: background refinement stopped: {self.refiner.error}")
        return summary


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
    keys = {k: v for k, v in (("data_key", options.data_key), ("positions_key", options.positions_key)) if v}
    device = resolve_device(options.accelerator)
    # with a given network, everything slow (loading, the first passes) happens before the
    # first frame can arrive; the shipped network is chosen from the source's probe
    network = LiveNetwork.load(options.model, device, options.max_block) if options.model else None
    stream = open_when_ready(source, keys, options.idle_timeout_s, log)
    try:
        if network is None:
            network = LiveNetwork.load(network_for(None, stream.probe()), device, options.max_block)
        out = claim_output_folder(
            output_dir, command="watch", overwrite=overwrite, inputs=[source, network.path]
        )
        probe = network.module.net.forward_model.probe.detach()
        made_for = network.module.model_config
        state = _WatchState(
            options=options, mosaic=GrowingStitcher(probe_weight(probe), device), probe=probe.cpu().numpy(),
            lock=threading.Lock(), read_range=stream.read_range,
            detector={"forward_model": made_for.forward_model,
                      "forward_model_options": made_for.forward_model_options},
            geometry=Geometry(wavelength_m=made_for.wavelength_m, pixel_size_m=made_for.object_pixel_m),
        )  # fmt: skip
        summary = _LiveLoop(state, stream, network, out, device, log, source).run()
        files = {name: out / name for name in LIVE_FILES}
        final = _final_reconstruction(stream, state, network.path, out, files, log)
    finally:
        stream.close()
    return WatchResult(output_dir=out, summary=summary, files=files, final=final)


def _final_reconstruction(stream, state: _WatchState, model: str, out: Path, files: dict, log) -> Any:
    """``reconstruct`` of everything received (``out/final``), after ``scan.npz``; None without frames."""
    from .reconstruction import ReconstructOptions, reconstruct

    options = state.options
    if not state.received or options.final_seconds <= 0:
        return None
    write_npz(stream.received_scan(state.probe), out / "scan.npz")
    files["scan.npz"] = out / "scan.npz"
    final_options = ReconstructOptions(
        model=os.fspath(model), device=DeviceOptions(accelerator=options.accelerator), progress=False,
        refinement=RefinementConfig(epochs=100000, time_budget_s=options.final_seconds, **state.detector),
    )  # fmt: skip
    final = reconstruct(out / "scan.npz", out / "final", final_options, log=log)
    files.update({f"final/{k}": v for k, v in final.files.items()})
    return final


#: the live mosaic (kept under the name the watch tests use)
LiveMosaic = GrowingStitcher


@dataclass(frozen=True)
class WatchInputs(Options):
    """Follow a growing HDF5/CXI file (SWMR, written by e.g. simulate --stream-to) or a folder
    receiving .npz frame files; predict each frame with the network and stitch it into a
    running mosaic at once (with --refine, refine the recent region through the physics in
    the background). Every --update-seconds: phase.png, amplitude.png, reconstruction.npz and
    a self-refreshing live.html, and one status line. Ends when the writer marks the scan
    complete, after --frames, or after --idle-timeout without a frame; then a final
    reconstruct of the received scan writes the usual outputs into OUTPUT_DIR/final."""

    section = "watch"
    source: str = option(
        None, "a growing HDF5/CXI file or a folder of frame files", positional=True, path=True,
        metavar="SOURCE",
    )  # fmt: skip
    output_dir: str = output_dir_option("folder for the live and final outputs")
