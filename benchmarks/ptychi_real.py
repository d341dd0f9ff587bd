"""pty-chi LSQML on the real Velociprobe scan (blind: probe retrieved from the file's guess).

Runs in an environment with ``ptychi`` (see ``ptychi_runner.py`` for one on CPU machines);
needs nothing of ptychopinn. Set up as pty-chi's own tests set up LSQML
(``tests/test_2d_ptycho_lsqml.py``): flat unit object, SGD step size 1 for object and probe,
the Gaussian noise model, batch size 96; the probe guess rescaled to the counts by LSQML itself
(``rescale_probe_intensity_in_first_epoch``, its default), secondary modes made by pty-chi's
``orthogonalize_initial_probe``. The file's patterns have their zero frequency at pixel
(0, 0), which is pty-chi's own convention (``fft_shift=False``); positions are the windows'
corners, so the centres are ``corner + N/2``.

Usage::

    /tmp/ptychi-venv/bin/python benchmarks/ptychi_real.py DATA.npz.bz2 --epochs 100 --modes 5 \\
        --output lsqml.npz [--subset even|odd]

Writes the object, the probe, the positions (centres, object pixels, the frame of the object
array) and the wall time after each epoch.
"""

from __future__ import annotations

import argparse
import bz2
import io
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--modes", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--subset", choices=("all", "even", "odd"), default="all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    import ptychi.api as api
    import torch
    from ptychi.api.task import PtychographyTask
    from ptychi.utils import get_suggested_object_size, orthogonalize_initial_probe

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with bz2.open(args.data) as handle:
        arrays = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        data = arrays["data"][0].astype(np.float32)
        corners = arrays["scan"][0].astype(np.float64)
        guess = arrays["probe"][0, 0, 0, 0].astype(np.complex64)
    keep = {"all": slice(None), "even": slice(0, None, 2), "odd": slice(1, None, 2)}[args.subset]
    data, corners = data[keep], corners[keep]
    size = data.shape[-1]
    centres = corners + size / 2
    centred = centres - (centres.max(0) + centres.min(0)) / 2  # relative to the object centre

    probe = np.zeros((1, args.modes, size, size), np.complex64)
    probe[0, 0] = guess
    probe = torch.from_numpy(probe)
    if args.modes > 1:
        probe = orthogonalize_initial_probe(probe)

    options = api.LSQMLOptions()
    options.data_options.data = data
    options.data_options.fft_shift = False  # zero frequency already at (0, 0)
    shape = get_suggested_object_size(centred, (size, size), extra=20)
    options.object_options.initial_guess = torch.ones((1, *shape), dtype=torch.complex64)
    options.object_options.pixel_size_m = 1.0
    options.object_options.optimizable = True
    options.object_options.optimizer = api.Optimizers.SGD
    options.object_options.step_size = 1
    options.probe_options.initial_guess = probe
    options.probe_options.optimizable = True
    options.probe_options.optimizer = api.Optimizers.SGD
    options.probe_options.step_size = 1
    options.probe_position_options.position_y_px = centred[:, 0]
    options.probe_position_options.position_x_px = centred[:, 1]
    options.probe_position_options.optimizable = False
    options.reconstructor_options.batch_size = args.batch_size
    options.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
    options.reconstructor_options.num_epochs = args.epochs
    options.reconstructor_options.default_device = api.Devices.CPU
    task = PtychographyTask(options)
    setup_s = time.perf_counter() - started
    times = []
    for _ in range(args.epochs):
        task.run(1)
        times.append(time.perf_counter() - started)
    obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    final_probe = task.get_data_to_cpu("probe", as_numpy=True)[0]
    origin = np.asarray(task.reconstructor.parameter_group.object.pos_origin_coords.cpu())
    np.savez(
        args.output, object=obj, probe=final_probe, positions=centred + origin[None, :],
        epoch_times=np.asarray(times), setup_s=setup_s, subset=args.subset,
    )  # fmt: skip
    print(f"pty-chi LSQML {args.subset}: {args.epochs} epochs in {times[-1]:.1f} s (setup {setup_s:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
