"""Training and inference speed on this CPU at N = 128 (issue 17), one process, one thread count.

Training: optimiser steps per second of the physics-informed network (gridsize 2, the default
fno generator, batch 16) on the real scan (or a simulated 128 x 128 scan when
``../shared/data`` is absent), for each variant, from the same initial weights and the same
batches, and the loss after those steps (equal loss per step = the variant changes speed, not
learning). Inference: patterns per second with stitching, per batch size and precision.

Usage::

    python benchmarks/bench_cpu_speed.py --steps 20 --output benchmarks/results/cpu_speed.json

Prints a table and writes JSON. Time nothing else on the machine while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from results_io import machine, write_results

REAL = Path(__file__).resolve().parents[1] / "examples" / "velociprobe-siemens-star.yaml"


def load_scan():
    from ptychopinn.io import read_scan
    from ptychopinn.simulate import SimulationConfig, simulate_scan

    warnings.simplefilter("ignore")
    try:
        return read_scan(REAL).load(), "real scan (Velociprobe, 516 x 128^2)"
    except Exception:  # noqa: BLE001 - the shared data are absent: a simulated scan of the same size
        config = SimulationConfig(pattern_size=128, n_positions=516, step_px=12.0, seed=0)
        return simulate_scan(config), "simulated scan (516 x 128^2)"


def build(scan, gridsize: int, batch_size: int, seed: int = 0):
    from ptychopinn.config import load_run_config
    from ptychopinn.data import GroupedDiffraction, group_positions, input_scale, make_dataloader
    from ptychopinn.models import PINNModule
    from ptychopinn.workflows.training import calibrated_probe

    config = load_run_config(overrides={"data": {"gridsize": gridsize}})
    totals = scan.total_counts()
    probe, _ = calibrated_probe(scan, float(totals.mean()), "auto")
    torch.manual_seed(seed)
    module = PINNModule(
        model=asdict(config.model), training=asdict(config.training), channels=gridsize**2,
        size=scan.pattern_size, probe_modes=probe.shape[0], learning_rate=1e-3, scheduler="none",
        input_scale=input_scale(scan), probe=torch.from_numpy(probe),
        mask=None if scan.mask is None else torch.from_numpy(scan.mask),
    )  # fmt: skip
    groups = group_positions(scan.positions, gridsize, None, None, seed)
    dataset = GroupedDiffraction(scan, groups, input_scale(scan))
    loader = make_dataloader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=0, pin_memory=False, seed=seed
    )
    return module, loader


def train_steps(module, batches, variant: str) -> dict:
    module = copy.deepcopy(module).train()
    if variant == "channels_last":
        module = module.to(memory_format=torch.channels_last)
    step_fn = module._loss
    if variant == "compile":
        module.net = torch.compile(module.net)
    optimizer = module.configure_optimizers()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if variant == "bf16" else contextlib.nullcontext()
    losses, times = [], []
    for batch in batches:
        started = time.perf_counter()
        with autocast:
            loss, _ = step_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
        losses.append(float(loss))
    warm = times[2:] if len(times) > 4 else times  # the first steps pay for allocation/compilation
    return {
        "variant": variant,
        "steps_per_s": len(warm) / sum(warm),
        "first_step_s": times[0],
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-3:])),
    }


def inference(module, scan, gridsize: int, batch_size: int, precision: str) -> dict:
    from ptychopinn.workflows import predict_object

    module = copy.deepcopy(module).eval()
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    with autocast:
        warm = scan.subset(np.arange(32))
        predict_object(module, warm, gridsize=gridsize, batch_size=batch_size, progress=False)
        started = time.perf_counter()
        predict_object(module, scan, gridsize=gridsize, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - started
    return {"batch_size": batch_size, "precision": precision, "patterns_per_s": scan.n_patterns / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16", "channels_last", "compile"])
    parser.add_argument("--inference-batches", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--output", default="benchmarks/results/cpu_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    scan, label = load_scan()
    module, loader = build(scan, 2, args.batch_size)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == args.steps:
            break
    threads = torch.get_num_threads()
    print(f"{label}; gridsize 2, batch {args.batch_size}, {args.steps} steps, {threads} threads")
    training = []
    for variant in args.variants:
        try:
            row = train_steps(module, batches, variant)
        except Exception as exc:  # noqa: BLE001 - a variant this torch cannot run is reported, not fatal
            row = {"variant": variant, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        training.append(row)
        if "error" in row:
            print(f"  train {variant:<14} failed: {row['error']}")
        else:
            print(
                f"  train {variant:<14} {row['steps_per_s']:6.3f} steps/s  first step "
                f"{row['first_step_s']:6.2f} s  loss {row['loss_first']:.4g} -> {row['loss_last']:.4g}"
            )
    infer_rows = []
    for precision in ("fp32", "bf16"):
        for batch_size in args.inference_batches:
            row = inference(module, scan, 2, batch_size, precision)
            infer_rows.append(row)
            print(f"  infer {precision:<5} batch {batch_size:4d} {row['patterns_per_s']:8.1f} patterns/s")
    write_results(
        args.output,
        {
            "machine": machine(),
            "scan": label,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "training": training,
            "inference": infer_rows,
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
