"""GPU figures in one process: inference with stitching, training steps, refinement epochs.

Needs torch and numpy; the network parts also need lightning and PyYAML (the package's
model modules import them); nothing else of the package's dependencies (no h5py, scipy or
scikit-image), so it runs from a source tree on a bare GPU machine (``PYTHONPATH=src``).
Run by ``benchmarks/gpu_check.sh``.

1. Inference: the default ``fno`` generator (untrained weights: throughput does not depend on
   them), gridsize 1, batches of patterns already on the device, every patch stitched into
   the full object on the device (:class:`~ptychopinn.physics.PatchStitcher`); patterns/s at
   N = 64 and 128, batches 256 to 4096, fp32, bf16 autocast and ``torch.compile``.
2. Training: steps/s of the generator + overlap constraint + forward model + Poisson NLL +
   Adam, gridsize 2, fp32 and bf16 autocast.
3. Live blocks: frames arriving from host memory in blocks of 1 to 1024 (counts as float32
   arrays, as a detector reader hands them over), each block copied to the device, predicted,
   stitched into a running mosaic and synchronised: frames/s and per-block latency (median and
   99th percentile) at N = 64 and 128, fp32 and bf16: what a live reconstruction can sustain.
4. Watch engine: a writer process streams frames into a growing CXI file
   (:class:`~ptychopinn.io.stream.StreamWriter`, blocks of 8 frames at a detector's rate) while
   this process follows it as ``ptychopinn watch`` does (the same source, network pass and
   growing stitcher, :class:`~ptychopinn.physics.GrowingStitcher`): frames/s kept up with,
   latency from frame written to mosaic updated (median, 99th percentile), largest backlog.
5. Refinement: seconds per epoch on a 576-pattern N = 64 scan made here through the forward
   model (preconditioned and L-BFGS), and on the real Velociprobe scan (N = 128, 516 patterns,
   blind, 3 probe modes) when its file is given with ``--real``.

Writes JSON (``--output``) and, for the real scan, the refined object (``--real-output``).
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import math
import platform
import sys
import time

import numpy as np
import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def synthetic_scan(size: int, side: int, step: float, photons: float, seed: int = 0):
    """A raster scan through a smooth random phase object and a focused probe, Poisson noise."""
    from ptychopinn.physics import diffraction_intensity, extract_patches

    rng = np.random.default_rng(seed)
    extent = int(math.ceil((side - 1) * step)) + size + 2
    noise = rng.standard_normal((extent, extent))
    spectrum = np.fft.fft2(noise) * np.exp(
        -(np.add.outer(np.fft.fftfreq(extent) ** 2, np.fft.fftfreq(extent) ** 2)) / 0.002
    )
    phase = np.real(np.fft.ifft2(spectrum))
    phase = 1.5 * (phase - phase.mean()) / phase.std()
    obj = np.exp(1j * phase).astype(np.complex64)
    axis = np.arange(size) - size / 2
    radius2 = axis[:, None] ** 2 + axis[None, :] ** 2
    probe = np.exp(-radius2 / (2 * (size / 8) ** 2) + 1j * radius2 / size**2 * 3).astype(np.complex64)
    probe *= math.sqrt(photons / float((np.abs(probe) ** 2).sum()))
    grid = np.arange(side) * step + size / 2 + 1
    positions = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    positions = positions + rng.uniform(-0.5, 0.5, positions.shape)
    patches = extract_patches(torch.from_numpy(obj)[None], torch.from_numpy(positions)[None], size)[0]
    expected = diffraction_intensity(patches, torch.from_numpy(probe))
    counts = torch.poisson(expected, generator=torch.Generator().manual_seed(seed)).numpy()
    return counts, positions, probe


def bench_refinement(
    device: torch.device, real: str | None, real_output: str | None, size: int = 64, side: int = 24,
    epochs: int = 20,
) -> dict:  # fmt: skip
    from ptychopinn.refine import RefinementConfig, refine_object

    counts, positions, probe = synthetic_scan(size, side, size / 16, 1e6)
    out: dict = {"scan": f"{side * side} patterns of {size} x {size}, 1e6 photons, known probe"}
    for optimizer in ("preconditioned", "lbfgs"):
        refine_object(
            counts, positions, probe, config=RefinementConfig(optimizer=optimizer, epochs=2), device=device
        )
        synchronize(device)
        result = refine_object(
            counts,
            positions,
            probe,
            config=RefinementConfig(optimizer=optimizer, epochs=epochs),
            device=device,
        )
        out[optimizer] = {
            "seconds_per_epoch": result.elapsed_s / epochs,
            "epochs": epochs,
            "final_loss": result.loss_history[-1],
        }
        print(f"refinement {optimizer}: {result.elapsed_s / epochs:.3f} s/epoch", flush=True)
    if real:
        with bz2.open(real) as handle:
            arrays = np.load(io.BytesIO(handle.read()), allow_pickle=False)
            data = np.fft.fftshift(arrays["data"][0], axes=(-2, -1)).astype(np.float32)
            corners = arrays["scan"][0].astype(np.float64)
            guess = arrays["probe"][0, 0, 0, 0]
        centres = corners - corners.min(axis=0) + data.shape[-1] / 2  # window centres, smallest at N/2
        config = RefinementConfig(refine_probe=True, probe_modes=3, epochs=3)
        refine_object(data, centres, guess, config=config, device=device)  # warm-up
        synchronize(device)
        for epochs in (30, 100):
            config = RefinementConfig(refine_probe=True, probe_modes=3, epochs=epochs)
            started = time.perf_counter()
            result = refine_object(data, centres, guess, config=config, device=device)
            wall = time.perf_counter() - started
            out[f"real_scan_{epochs}_epochs"] = {
                "seconds": wall,
                "seconds_per_epoch": result.elapsed_s / epochs,
                "final_loss": result.loss_history[-1],
            }
            print(f"real scan, blind, 3 modes, {epochs} epochs: {wall:.1f} s", flush=True)
            if real_output:
                np.savez(
                    f"{real_output}-{epochs}.npz",
                    object=result.object,
                    probe=result.probe,
                    positions=result.positions,
                    illumination=result.illumination,
                )
    return out


def _window(size: int, device: torch.device) -> torch.Tensor:
    """A probe-like stitching window: a Gaussian of sigma N/6 (peak 1)."""
    line = torch.exp(-((torch.arange(size, device=device) - size / 2) ** 2) / (2 * (size / 6) ** 2))
    return line[:, None] * line[None, :]


def stitched_pass(model, x, positions, shape, weight, steps, batch, bf16, device) -> None:
    """Predict ``steps`` batches and stitch every patch into one object, all on the device."""
    from ptychopinn.physics import PatchStitcher

    stitcher = PatchStitcher(shape, weight, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for step in range(steps):
            patches = model(x)[:, 0].to(torch.complex64)
            stitcher.add(patches, positions[step * batch : (step + 1) * batch])
    stitcher.result()


def training_step(model, optimizer, x, offsets, counts, bf16, device) -> None:
    """One step: generator, overlap constraint, forward model, Poisson NLL, Adam."""
    from ptychopinn.physics import poisson_nll

    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        _, predicted = model(x, offsets)
    loss = poisson_nll(predicted.float(), counts)
    loss.backward()
    optimizer.step()


def bench_inference(
    device: torch.device, sizes, batches, patterns: int, modes=("fp32", "bf16", "compiled")
) -> list[dict]:
    from ptychopinn.config import ModelConfig
    from ptychopinn.models import build_generator

    rows = []
    for size in sizes:
        generator = build_generator(ModelConfig(generator="fno"), channels=1, size=size).to(device).eval()
        weight = _window(size, device)
        compiled = None
        for batch in batches:
            x = torch.rand(batch, 1, size, size, device=device)
            steps = max(1, patterns // batch)
            side = int(math.ceil(math.sqrt(steps * batch)))
            positions = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1)
            positions = (positions.reshape(-1, 2)[: steps * batch].double() * size / 8 + size / 2).to(device)
            shape = (int(positions[:, 0].max()) + size, int(positions[:, 1].max()) + size)
            for mode in modes:
                if mode == "compiled":
                    if compiled is None:
                        try:
                            compiled = torch.compile(generator)
                        except Exception as exc:  # noqa: BLE001 - report, do not stop the check
                            rows.append({"size": size, "batch": batch, "mode": mode, "error": str(exc)[:200]})
                            continue
                    model = compiled
                else:
                    model = generator

                try:
                    work = (model, x, positions, shape, weight, steps, batch, mode == "bf16", device)
                    stitched_pass(*work)  # warm-up (and compilation)
                    synchronize(device)
                    started = time.perf_counter()
                    stitched_pass(*work)
                    synchronize(device)
                    elapsed = time.perf_counter() - started
                except Exception as exc:  # noqa: BLE001 - out of memory or a compile failure: report it
                    rows.append({"size": size, "batch": batch, "mode": mode, "error": str(exc)[:200]})
                    continue
                rate = steps * batch / elapsed
                rows.append({"size": size, "batch": batch, "mode": mode, "patterns_per_s": rate})
                print(f"inference N={size} batch={batch} {mode}: {rate:,.0f} patterns/s", flush=True)
        del generator, compiled
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def bench_live(
    device: torch.device, sizes, blocks, frames: int, modes=("fp32", "bf16"), repeats: int = 200
) -> list[dict]:
    """Blocks of frames from host memory to an updated mosaic: frames/s and latency per block."""
    from ptychopinn.config import ModelConfig
    from ptychopinn.models import build_generator
    from ptychopinn.physics import PatchStitcher

    rows = []
    for size in sizes:
        generator = build_generator(ModelConfig(generator="fno"), channels=1, size=size).to(device).eval()
        weight = _window(size, device)
        side = int(math.ceil(math.sqrt(frames)))
        grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)
        positions = grid[:frames].astype(np.float64) * size / 8 + size / 2
        shape = (int(positions[:, 0].max()) + size, int(positions[:, 1].max()) + size)
        counts = np.random.default_rng(0).poisson(50.0, (frames, size, size)).astype(np.float32)
        for block in blocks:
            for mode in modes:
                stitcher = PatchStitcher(shape, weight, device=device)
                latencies = []
                steps = min(repeats, max(3, frames // block))
                try:
                    for step in range(steps + 2):  # the first two blocks warm up
                        start = (step * block) % max(1, frames - block)
                        started = time.perf_counter()
                        host = torch.from_numpy(counts[start : start + block])
                        x = host.to(device, non_blocking=False).sqrt().unsqueeze(1)
                        x = x / x.mean().clamp_min(1e-12)
                        with torch.no_grad(), torch.autocast(
                            device.type, dtype=torch.bfloat16, enabled=mode == "bf16"
                        ):
                            patches = generator(x)[:, 0].to(torch.complex64)
                        where = torch.from_numpy(positions[start : start + block]).to(device)
                        stitcher.add(patches, where)
                        synchronize(device)
                        if step >= 2:
                            latencies.append(time.perf_counter() - started)
                except Exception as exc:  # noqa: BLE001 - out of memory: report it
                    rows.append({"size": size, "block": block, "mode": mode, "error": str(exc)[:200]})
                    continue
                latency = np.asarray(latencies)
                row = {
                    "size": size,
                    "block": block,
                    "mode": mode,
                    "frames_per_s": block * len(latency) / latency.sum(),
                    "latency_median_ms": 1e3 * float(np.median(latency)),
                    "latency_p99_ms": 1e3 * float(np.percentile(latency, 99)),
                }
                rows.append(row)
                print(
                    f"live N={size} block={block} {mode}: {row['frames_per_s']:,.0f} frames/s, "
                    f"latency {row['latency_median_ms']:.2f} ms (p99 {row['latency_p99_ms']:.2f})",
                    flush=True,
                )
        del generator
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


_WRITER = """
import sys, time
import numpy as np
from ptychopinn.io import ScanMetadata
from ptychopinn.io.stream import StreamWriter
path, rate = sys.argv[1], float(sys.argv[4])
size, frames, block = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
rng = np.random.default_rng(0)
c = np.arange(size) - size / 2
probe = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (size / 6) ** 2).astype(np.complex64)
meta = ScanMetadata(energy_ev=8800.0, detector_distance_m=2.0, detector_pixel_size_m=75e-6)
side = int(np.ceil(np.sqrt(frames)))
grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:frames]
positions = grid * size / 8.0 + size / 2
pool = rng.poisson(50.0, (256, size, size)).astype(np.float32)
with StreamWriter(path, probe=probe, metadata=meta) as writer:
    started = time.perf_counter()
    for start in range(0, frames, block):
        delay = started + start / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        stop = min(start + block, frames)
        writer.append(pool[np.arange(start, stop) % 256], positions[start:stop])
"""


def bench_watch(device: torch.device, size: int, frames: int, rates, block: int = 8) -> list[dict]:
    """Follow a growing file written by another process at each rate, as ``watch`` does."""
    import os
    import subprocess
    import tempfile

    from ptychopinn.config import ModelConfig
    from ptychopinn.io.stream import HDF5StreamSource
    from ptychopinn.models import build_generator
    from ptychopinn.physics import GrowingStitcher

    generator = build_generator(ModelConfig(generator="fno"), channels=1, size=size).to(device).eval()
    weight = _window(size, device)
    from ptychopinn.models.batching import bucket_sizes, padded

    largest = 4096
    with torch.no_grad():  # as watch does before its first frame: every batch shape prepared
        for frames_per_pass in bucket_sizes(largest):
            generator(torch.zeros(frames_per_pass, 1, size, size, device=device))
    synchronize(device)
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "src")}
    for rate in rates:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "live.cxi")
            writer = subprocess.Popen(
                [sys.executable, "-c", _WRITER, path, str(size), str(frames), str(rate), str(block)],
                env=env, stderr=subprocess.PIPE,
            )  # fmt: skip
            deadline, source = time.time() + 60, None
            while source is None and time.time() < deadline:  # open as soon as it is followable
                try:
                    source = HDF5StreamSource(path)
                except Exception:  # noqa: BLE001 - not created yet, or not yet in SWMR mode
                    time.sleep(0.005)
            stitcher = GrowingStitcher(weight, device)
            latencies, done, backlog, first, last = [], 0, 0, None, time.time()
            with torch.no_grad():
                while done < frames and time.time() - last < 10:
                    got = source.poll(largest)
                    if got is None:
                        time.sleep(0.0005)
                        continue
                    now = time.time()
                    first = now if first is None else first
                    x = torch.from_numpy(got.counts).to(device).sqrt()[:, None]
                    x = x * (size / 2) / x.square().sum(dim=(-1, -2)).mean().sqrt().clamp_min(1e-12)
                    stitcher.add(generator(padded(x, largest))[: len(got), 0], got.positions)
                    synchronize(device)
                    last = time.time()
                    latencies.append(last - got.written_at)
                    done += len(got)
                    backlog = max(backlog, source.backlog())
            writer.wait(timeout=120)
            source.close()
            latency = np.concatenate(latencies) if latencies else np.zeros(1)
            row = {
                "size": size, "rate_hz": rate, "frames": done, "block": block,
                "frames_per_s": done / max(last - (first or last), 1e-9),
                "latency_median_ms": 1e3 * float(np.median(latency)),
                "latency_p99_ms": 1e3 * float(np.percentile(latency, 99)),
                "max_backlog": backlog,
                "writer_error": writer.stderr.read().decode()[-300:] if writer.returncode else None,
            }  # fmt: skip
            rows.append(row)
            print(
                f"watch engine N={size} at {rate:g} Hz: {row['frames_per_s']:,.0f} frames/s over {done} "
                f"frames, latency {row['latency_median_ms']:.1f} ms (p99 {row['latency_p99_ms']:.1f}), "
                f"max backlog {backlog}",
                flush=True,
            )
    return rows


def bench_training(device: torch.device, sizes, batch: int, steps: int) -> list[dict]:
    from ptychopinn.config import ModelConfig
    from ptychopinn.models import ForwardModel, PtychoPINN, build_generator

    rows = []
    for size in sizes:
        axis = torch.arange(size) - size / 2
        probe = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * (size / 8) ** 2)).to(
            torch.complex64
        )
        model = PtychoPINN(
            build_generator(ModelConfig(generator="fno"), channels=4, size=size), ForwardModel(probe * 100)
        ).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.rand(batch, 4, size, size, device=device)
        offsets = (torch.rand(batch, 4, 2, device=device) - 0.5) * size / 4
        counts = torch.poisson(torch.full((batch, 4, size, size), 5.0, device=device))
        for mode in ("fp32", "bf16"):
            work = (model, optimizer, x, offsets, counts, mode == "bf16", device)
            for _ in range(3):
                training_step(*work)
            synchronize(device)
            started = time.perf_counter()
            for _ in range(steps):
                training_step(*work)
            synchronize(device)
            rate = steps / (time.perf_counter() - started)
            rows.append(
                {
                    "size": size,
                    "gridsize": 2,
                    "batch": batch,
                    "mode": mode,
                    "steps_per_s": rate,
                    "patterns_per_s": rate * batch * 4,
                }
            )
            print(f"training N={size} g=2 batch={batch} {mode}: {rate:.1f} steps/s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--real", help="the real scan's .npz.bz2 file")
    parser.add_argument("--real-output", help="prefix of the refined real-scan objects")
    parser.add_argument("--patterns", type=int, default=16384)
    parser.add_argument("--only", nargs="*", default=["watch", "live", "inference", "training", "refinement"])
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="every section on the CPU at toy sizes (seconds): checks the script, measures nothing",
    )
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry_run else args.device)
    results: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(json.dumps(results), flush=True)
    sections = {
        "refinement": lambda: bench_refinement(device, args.real, args.real_output),
        "inference": lambda: bench_inference(device, (64, 128), (256, 1024, 4096), args.patterns),
        "training": lambda: bench_training(device, (64, 128), 16, 30),
        "live": lambda: bench_live(device, (64, 128), (1, 16, 64, 256, 1024), 8192),
        "watch": lambda: bench_watch(device, 64, 20000, (2000, 5000)),
    }
    if args.dry_run:
        results["dry_run"] = True
        sections = {
            "refinement": lambda: bench_refinement(device, None, None, size=16, side=4, epochs=2),
            "inference": lambda: bench_inference(device, (16,), (8,), 16, modes=("fp32", "bf16")),
            "training": lambda: bench_training(device, (16,), 2, 2),
            "live": lambda: bench_live(device, (16,), (1, 4), 16, repeats=3),
            "watch": lambda: bench_watch(device, 16, 64, (200,)),
        }
    for name in args.only:
        started = time.perf_counter()
        try:
            results[name] = sections[name]()
        except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"{name} failed: {exc}", flush=True)
        results[f"{name}_wall_s"] = time.perf_counter() - started
        with open(args.output, "w") as handle:  # after every section: a timeout keeps what was done
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
