"""Workflow: reconstruct a scan with a trained network (``ptychopinn infer``).

Positions are grouped exactly as in training (the bundle's gridsize; never one pattern
repeated C times), the network predicts mutually consistent patches in batches, and every
patch is stitched into the full object with a weighted scatter-add (docs/conventions.md, "Stitching").
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..common import DeviceOptions, output_dir_option, photons_option, progress_option
from ..config import RunConfig
from ..data import GroupedDiffraction, group_positions, holdout_mask, input_scale, make_dataloader
from ..data.binning import bin_scan
from ..io import Scan, read_scan, write_json
from ..models import PINNModule, build_module
from ..options import Options, option
from ..physics import PatchStitcher, canvas_shape, probe_weight
from .bundles import load_model_bundle, resolve_device
from .evaluation import compare_to_truth
from .outputs import check_product_metadata, write_product, write_reconstruction
from .report import write_report
from .results import InferenceResult, Reconstruction
from .run_folder import claim_output_folder

log = logging.getLogger("ptychopinn")


@dataclass(frozen=True)
class LoaderOptions(Options):
    """How patterns are read for a network: DataLoader workers and pinned memory."""

    section = "loader"
    num_workers: int = option(0, "DataLoader workers", flags=("--num-workers", "--num_workers"), minimum=0)
    pin_memory: bool | None = option(
        None, "pin the data loader's host memory", flags=("--pin-memory",), default_text="on a CUDA device"
    )


def predict_object(
    module: PINNModule,
    scan: Scan,
    *,
    gridsize: int,
    n_groups: int | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool | None = None,
    precision: str = "fp32",
    loader: LoaderOptions | None = None,
) -> Reconstruction:
    """Predict patches for every group of a scan and stitch them into the full object.

    Parameters
    ----------
    module : PINNModule
        Trained network. Its frozen input scale is used, never recomputed, unless it was
        pretrained for any scan (``input_normalisation="per_scan"``): then the scan's own.
    scan : Scan
        Patterns to reconstruct (read lazily when the scan is lazy).
    gridsize : int
        Must be the gridsize the network was trained with.
    n_groups : int, optional
        Groups to predict; default one per position.
    batch_size : int
        Groups per forward pass.
    device : torch.device or str
    seed : int
        Fixes the grouping.
    progress : bool, optional
        Progress bar (default: on a terminal).
    precision : {"fp32", "bf16", "fp16"}
        The network's arithmetic (autocast; fp16 on a GPU only). The overlap constraint and
        the stitching stay in float32.
    loader : LoaderOptions, optional
        DataLoader workers reading patterns (default 0) and pinned memory (default: on a CUDA
        device).
    """
    loader = loader if loader is not None else LoaderOptions()
    size = int(module.hparams.size)
    autocast = precision_context(precision, torch.device(device))
    if scan.pattern_size != size:
        raise ValueError(f"{scan.source}: patterns are {scan.pattern_size} pixels, the model expects {size}")
    device = torch.device(device)
    groups = group_positions(scan.positions, gridsize, n_groups, None, seed)
    per_scan = module.hparams.get("input_normalisation", "frozen") == "per_scan"
    scale = input_scale(scan) if per_scan else float(module.input_scale)
    dataset = GroupedDiffraction(scan, groups, scale)
    batches = make_dataloader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        pin_memory=device.type == "cuda" if loader.pin_memory is None else loader.pin_memory,
        seed=seed,
    )
    module = module.to(device).eval()
    shape = (
        scan.object.shape if scan.object is not None else canvas_shape(torch.from_numpy(scan.positions), size)
    )
    stitcher = PatchStitcher(shape, probe_weight(module.net.forward_model.probe.detach()), device=device)
    positions = torch.from_numpy(scan.positions).to(device)
    with torch.inference_mode():
        for batch in tqdm(
            batches,
            desc="inference",
            unit="batch",
            disable=None if progress is None else not progress,
        ):
            x = batch["x"].to(device, non_blocking=True)
            offsets = batch["offsets"].to(device, non_blocking=True)
            with autocast:
                patches = module.net.predict_patches(x, offsets)
            index = batch["indices"].to(device).reshape(-1)
            stitcher.add(patches.reshape(-1, size, size), positions[index])
    result = stitcher.result()
    return Reconstruction(
        object=result.object.cpu().numpy().astype(np.complex64),
        coverage=result.coverage.cpu().numpy(),
        weight_sum=result.weight_sum.cpu().numpy().astype(np.float32),
        positions=scan.positions,
        pixel_size_m=scan.pixel_size_m(),
    )


#: Inference precisions (``--precision``) and their autocast dtypes.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Patterns per forward pass when no batch size is given: few on a CPU (where larger batches
#: fall out of cache: 89 patterns/s at 32 patterns, 19 at 1024 on the real scan,
#: docs/benchmarks.md), many on a GPU.
AUTO_PATTERNS = {"cpu": 32, "cuda": 4096, "mps": 1024}


def precision_context(precision: str, device: torch.device) -> Any:
    """The autocast context of an inference precision (a no-op for fp32).

    Raises
    ------
    ValueError
        Unknown precision, or fp16 on a CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: must be one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("--precision fp16 needs a GPU; on a CPU use bf16 or fp32")
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def auto_batch_size(device: torch.device, channels: int = 1) -> int:
    """Groups of ``channels`` patterns per inference forward pass on a device (:data:`AUTO_PATTERNS`)."""
    return max(1, AUTO_PATTERNS.get(device.type, 256) // channels)


def with_data_consistency(module: PINNModule, steps: int, gridsize: int = 2) -> PINNModule:
    """A gridsize-1 ``fno`` network followed by plain data-consistency steps over groups.

    The network's per-pattern guesses of each group of ``gridsize^2`` neighbouring patterns
    are merged into the group's region and pulled ``steps`` times towards the group's
    measured amplitudes through the probe (the ``unrolled`` generator with the network as
    its encoder, step sizes 1 and no learned corrections): one fixed forward pass that uses
    the overlap the network alone cannot (``benchmarks/bench_information.py``). Quality grows
    with ``steps``, and so does the time.

    Raises
    ------
    ValueError
        The network is not a gridsize-1 fno, or ``steps``/``gridsize`` are out of range.
    """
    hparams = dict(module.hparams)
    model = dict(hparams["model"])
    if model["generator"] != "fno" or int(hparams["channels"]) != 1:
        raise ValueError(
            f"data-consistency steps need a gridsize-1 fno network; this one is a "
            f"{model['generator']} with {hparams['channels']} channel(s)"
        )
    if steps < 1 or gridsize < 1:
        raise ValueError(f"need steps >= 1 and gridsize >= 1, got {steps} and {gridsize}")
    model.update(generator="unrolled", unroll_steps=int(steps), unroll_corrections=False)
    config = RunConfig().updated({"model": model, "training": dict(hparams["training"])})
    wrapped = build_module(
        config,
        channels=gridsize**2,
        size=int(hparams["size"]),
        probe_modes=int(hparams["probe_modes"]),
        input_scale=float(module.input_scale),
        input_normalisation=hparams.get("input_normalisation", "frozen"),
        probe=module.net.forward_model.probe.detach().clone(),
        mask=module.mask,
    )
    wrapped.net.generator.encoder.load_state_dict(module.net.generator.state_dict())
    return wrapped.eval()


#: Lightning's spellings of the inference precisions (train's --precision), accepted too
_LIGHTNING_PRECISIONS = {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16", "bf16-true": "bf16",
                         "bf16": "bf16", "16-mixed": "fp16", "16-true": "fp16", "16": "fp16"}  # fmt: skip


@dataclass(frozen=True)
class InferOptions(Options):
    """Options of :func:`infer`.

    Attributes
    ----------
    device : DeviceOptions
        Where the network runs.
    loader : LoaderOptions
        DataLoader workers and pinned memory.
    inference_batch_size : int or None
        Groups per forward pass; None: by device (:data:`AUTO_PATTERNS` patterns).
    n_groups : int or None
        Groups to predict; None: one per position.
    photons_per_pattern : float or None
        For NPZ files holding normalised amplitudes.
    data_consistency_steps : int
        > 0: follow a gridsize-1 fno network by that many data-consistency steps over 2 x 2
        groups (:func:`with_data_consistency`).
    precision : {"fp32", "bf16", "fp16"}
        The network's arithmetic (Lightning's spellings, ``bf16-mixed`` and so on, mean the same).
    region : str or None
        Reconstruct only the positions in a hold-out region: ``"held-out"`` for the one the
        bundle was trained without (its ``data.holdout_region``), or ``"SIDE:FRACTION"``
        (:mod:`ptychopinn.data.holdout`).
    progress : bool or None
        Progress bars; None: on a terminal.
    ptychodus_product : bool
        Also write ``product.h5`` (see :func:`~ptychopinn.workflows.outputs.write_product`).
    """

    section = "infer"
    device: DeviceOptions = field(default_factory=DeviceOptions)
    loader: LoaderOptions = field(default_factory=LoaderOptions)
    inference_batch_size: int | None = option(
        None, "groups per forward pass", flags=("--inference-batch-size", "--inference_batch_size"),
        minimum=1, default_text="by device, 32 patterns on a CPU, 4096 on a GPU",
    )  # fmt: skip
    n_groups: int | None = option(
        None, "groups to predict", flags=("--n-groups", "--n_groups", "--n-images", "--n_images"),
        minimum=1, default_text="one per position",
    )  # fmt: skip
    photons_per_pattern: float | None = photons_option()
    data_consistency_steps: int = option(
        0, "follow a gridsize-1 fno network by K data-consistency steps through the probe over "
        "2 x 2 groups of patterns; better phase, K times slower", flags=("--data-consistency-steps",),
        metavar="K", minimum=0, default_text="0: the network alone",
    )  # fmt: skip
    precision: str = option(
        "fp32", "the network's arithmetic (fp16 on a GPU only; stitching stays float32)",
        flags=("--precision",), choices=tuple(PRECISIONS) + tuple(_LIGHTNING_PRECISIONS),
        metavar="PRECISION",
    )  # fmt: skip
    region: str | None = option(
        None, "reconstruct only the positions in this region (e.g. right:0.25)", flags=("--region",),
        metavar="SIDE:FRACTION", exclusive="region",
        shortcuts=((("--held-out",), "held-out",
                    "reconstruct only the positions the model was trained without "
                    "(train --holdout-region)"),),
    )  # fmt: skip
    progress: bool | None = progress_option()
    ptychodus_product: bool = option(
        False, "also write OUTPUT_DIR/product.h5, a product that ptychodus opens",
        flags=("--ptychodus-product",),
    )  # fmt: skip

    def normalise(self) -> None:
        if isinstance(self.precision, str):
            self._set("precision", _LIGHTNING_PRECISIONS.get(self.precision, self.precision))


def infer(
    model: str | os.PathLike,
    data: str | os.PathLike,
    output_dir: str | os.PathLike,
    options: InferOptions | None = None,
    *,
    overwrite: bool = False,
) -> InferenceResult:
    """Reconstruct ``data`` with the bundle ``model`` and write every output to ``output_dir``.

    ``output_dir`` is claimed for this run (:func:`~.run_folder.claim_output_folder`): a folder
    holding an earlier run's outputs is refused unless ``overwrite``; inputs are never written.

    Writes ``reconstruction.npz``, ``amplitude.tiff``, ``phase.tiff``, ``amplitude.png``,
    ``phase.png`` and, when the scan holds a ground-truth object, ``metrics.json``; with
    ``options.ptychodus_product`` also ``product.h5``.
    """
    options = options if options is not None else InferOptions()
    region, precision = options.region, options.precision
    data_consistency_steps = options.data_consistency_steps
    loaded = load_model_bundle(model)
    scan = read_scan(data, photons_per_pattern=options.photons_per_pattern)
    factor = loaded.config.data.detector_bin
    if factor > 1 and scan.pattern_size == loaded.pattern_size * factor:
        scan = bin_scan(scan, factor)  # binned as the network was trained
    if region is not None:
        spec = loaded.config.data.holdout_region if region == "held-out" else region
        if spec is None:
            raise ValueError(
                f"--held-out: {model} was trained without a holdout region (train --holdout-region)"
            )
        selected = holdout_mask(scan.positions, spec)
        log.info("region %s: %d of %d positions", spec, int(selected.sum()), scan.n_patterns)
        scan = scan.subset(selected)
    if options.ptychodus_product:
        check_product_metadata(scan)  # before the work, not after it
    device = resolve_device(options.device.accelerator, options.device.devices)
    precision_context(precision, device)  # a bad precision fails before the work
    output_dir = claim_output_folder(output_dir, command="infer", inputs=[model, data], overwrite=overwrite)
    batch = options.inference_batch_size or auto_batch_size(device, int(loaded.module.hparams.channels))
    started = time.perf_counter()
    module, gridsize = loaded.module, loaded.gridsize
    if data_consistency_steps:
        module, gridsize = with_data_consistency(module, data_consistency_steps, gridsize=2), 2
        if scan.mask is not None and not scan.mask.all():
            log.warning(
                "%s: %d masked detector pixels count as zero in the data-consistency steps",
                scan.source, int((~scan.mask).sum()),
            )  # fmt: skip
    reconstruction = predict_object(
        module, scan, gridsize=gridsize, n_groups=options.n_groups, batch_size=batch,
        device=device, seed=loaded.config.execution.seed, progress=options.progress, precision=precision,
        loader=options.loader,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    comparison = compare_to_truth(
        reconstruction.object, scan.object, reconstruction.weight_sum, pixel_size_m=scan.pixel_size_m()
    )
    files = write_reconstruction(
        reconstruction,
        output_dir,
        comparison=comparison,
        title=f"{Path(data).name} with {Path(model).name}",
    )
    if options.ptychodus_product:
        files["product.h5"] = write_product(reconstruction, scan, Path(output_dir) / "product.h5")
    info = {
        "model": os.fspath(model),
        "data": os.fspath(data),
        "device": str(device),
        "batch_size": batch,
        "data_consistency_steps": data_consistency_steps,
        "region": region,
        "detector_bin": factor,
        "precision": precision,
        "seconds": elapsed,
        "patterns": scan.n_patterns,
        "patterns_per_second": scan.n_patterns / elapsed if elapsed > 0 else None,
    }
    files["inference.json"] = Path(output_dir) / "inference.json"
    write_json(files["inference.json"], info)
    files["report.html"] = write_report(
        output_dir,
        f"Inference: {Path(data).name} with {Path(model).name}",
        images=[("amplitude", files["amplitude.png"]), ("phase", files["phase.png"]),
                ("comparison with the ground truth", files.get("comparison.png", ""))],
        metrics=comparison.to_dict() if comparison else None,
        config={"inference": {**options.to_dict(), "batch_size": batch},
                "model": {"file": os.fspath(model), "generator": loaded.config.model.generator,
                          "gridsize": loaded.gridsize, "pattern_size": loaded.pattern_size}},
        details=info,
    )  # fmt: skip
    return InferenceResult(reconstruction, comparison, files, info["patterns_per_second"] or 0.0)


@dataclass(frozen=True)
class InferInputs(Options):
    """Group positions as in training, predict patches in batches, stitch the full object.
    Writes reconstruction.npz, amplitude/phase TIFF and PNG, metrics.json when the data hold
    a ground truth, inference.json."""

    section = "infer"
    model: str = option(
        None, "model bundle (.zip)", flags=("--model", "--model_path", "--model-path"), path=True,
        required=True, metavar="MODEL",
    )  # fmt: skip
    data: str = option(
        None, "scan file (NPZ or CXI) or a ptychodus directory",
        flags=("--data", "--test_data", "--test-data"), path=True, required=True, metavar="DATA",
    )  # fmt: skip
    output_dir: str = output_dir_option()
