"""Run pty-chi's iterative solvers on a scan file, for side-by-side benchmarks.

Needs the optional ``ptychi`` package (``pip install 'ptychopinn[iterative]'`` in an
environment whose torch has a matching torchvision: pty-chi imports it). On a CPU-only
machine with the CPU torch 2.13.0 build, use a separate environment::

    python -m venv /tmp/ptychi-venv
    /tmp/ptychi-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 ptychi
    /tmp/ptychi-venv/bin/pip install --no-deps -e . && /tmp/ptychi-venv/bin/pip install safetensors pyyaml

Usage::

    python benchmarks/ptychi_runner.py SCAN.npz --algorithm lsqml --seconds 60 --output result.json

Configured as pty-chi's own tests configure it (``tests/test_2d_ptycho_lsqml.py``): positions
as patch centres relative to the object centre, centred patterns (``fft_shift``), the known
probe kept as given, converted to pty-chi's unnormalised FFT (divided by N; LSQML:
``rescale_probe_intensity_in_first_epoch=False``), LSQML with the
Gaussian noise model and SGD step size 1; rPIE with its defaults. Checked to reproduce
pty-chi's known behaviour: docs/benchmarks.md, "pty-chi set up as its tests do".

Runs epoch by epoch from a flat object with the known probe (fixed) and positions (fixed);
after each epoch records the elapsed time and the phase/amplitude SSIM against the scan's
ground truth, with the same alignment and well-covered region as ptychopinn's own metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def run(
    scan_path: str,
    algorithm: str,
    seconds: float,
    batch_size: int,
    device: str,
    epochs: int = 10**9,
    momentum: float = 0.0,
) -> dict:
    import numpy as np
    import ptychi.api as api
    import torch
    from ptychi.api.task import PtychographyTask

    from ptychopinn.evaluation import compare_objects
    from ptychopinn.io import read_scan
    from ptychopinn.physics import probe_weight, scatter_patches

    started = time.perf_counter()
    scan = read_scan(scan_path).load()
    options = {"lsqml": api.LSQMLOptions, "rpie": api.RPIEOptions}[algorithm]()
    options.data_options.data = scan.diffraction
    options.data_options.wavelength_m = scan.metadata.wavelength_m or 1e-10
    if scan.mask is not None:
        options.data_options.valid_pixel_mask = scan.mask
    # set up as pty-chi's own tests do: positions are patch centres relative to the object
    # centre (the origin given explicitly, so the object comes back on the truth's grid), the
    # patterns are centred (fft_shift, its default), the known probe kept as given
    height, width = scan.object.shape
    centre = np.array([height / 2, width / 2])
    options.data_options.fft_shift = True
    options.object_options.initial_guess = np.ones((1, height, width), np.complex64)
    options.object_options.pixel_size_m = scan.pixel_size_m() or 1.0
    options.object_options.optimizable = True
    options.object_options.optimizer = api.Optimizers.SGD
    options.object_options.step_size = 1
    options.object_options.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    options.object_options.position_origin_coords = tuple(centre)
    # pty-chi's far field is an unnormalised FFT (ours is orthonormal): the same counts need
    # a probe N times weaker in its convention
    options.probe_options.initial_guess = scan.probe_modes[None] / scan.pattern_size
    options.probe_options.optimizable = False
    options.probe_position_options.position_y_px = scan.positions[:, 0] - centre[0]
    options.probe_position_options.position_x_px = scan.positions[:, 1] - centre[1]
    options.probe_position_options.optimizable = False
    options.reconstructor_options.batch_size = batch_size
    options.reconstructor_options.num_epochs = 1
    options.reconstructor_options.default_device = api.Devices.GPU if device == "cuda" else api.Devices.CPU
    if algorithm == "lsqml":
        options.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
        options.reconstructor_options.rescale_probe_intensity_in_first_epoch = False  # the probe is known
        if momentum > 0:  # compact batches with momentum, as pty-chi's own examples pair them
            options.reconstructor_options.batching_mode = api.BatchingModes.COMPACT
            options.reconstructor_options.momentum_acceleration_gain = momentum
            options.reconstructor_options.momentum_acceleration_gradient_mixing_factor = 1
    task = PtychographyTask(options)
    setup_s = time.perf_counter() - started

    weight = probe_weight(torch.from_numpy(scan.probe_modes))
    stack = weight.expand(scan.n_patterns, *weight.shape).contiguous()
    illumination = scatter_patches(stack[None], torch.from_numpy(scan.positions)[None], scan.object.shape)[0]
    well = (illumination >= 0.1).numpy()

    curve, snapshots = [], []
    while time.perf_counter() - started < seconds and len(snapshots) < epochs:
        task.run(1)
        snapshots.append((time.perf_counter() - started, task.get_data_to_cpu("object", as_numpy=True)[0]))
    diverged = False
    for elapsed, obj in snapshots:  # scored after the run: scoring is not the solver's time
        if not np.isfinite(obj).all():
            diverged = True  # NaN or inf: the solver diverged; later epochs stay so
            break
        comparison = compare_objects(obj, scan.object, well)
        curve.append((elapsed, comparison.phase.ssim, comparison.amplitude.ssim))
    reached = next((t for t, ssim, _ in curve if ssim >= 0.95), None)
    return {
        "solver": f"pty-chi {algorithm}",
        "setup_s": setup_s,
        "epochs": len(snapshots),
        "diverged": diverged,
        "seconds_to_phase_ssim_0.95": reached,
        "final_phase_ssim": None if diverged or not curve else curve[-1][1],
        "final_amplitude_ssim": None if diverged or not curve else curve[-1][2],
        "curve": curve,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scan")
    parser.add_argument("--algorithm", choices=("lsqml", "rpie"), default="lsqml")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--epochs", type=int, default=10**9, help="stop after this many epochs too")
    parser.add_argument(
        "--momentum", type=float, default=0.0, help="LSQML: compact batches with this momentum gain (0: off)"
    )
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    result = run(
        args.scan, args.algorithm, args.seconds, args.batch_size, args.device, args.epochs, args.momentum
    )
    with open(args.output, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
