"""Does simulating the corpus on the fly keep up with training?

Measures, at N = 64 with the simulator's focused probe: items per second produced by the
corpus DataLoader with 0, 1 and 2 worker processes (per object class and for the mix), and
items per second consumed by one training step of the default network (fno) with its loss,
on data already in memory. Loading keeps up when the first exceeds the second.

Usage::

    python benchmarks/bench_corpus.py --batches 20
"""

from __future__ import annotations

import argparse
import time

from results_io import machine, write_results


def loader_rate(probe, config, workers: int, batches: int, batch_size: int) -> float:
    from torch.utils.data import DataLoader

    from ptychopinn.data import CorpusSampler, SimulatedCorpus

    loader = DataLoader(
        SimulatedCorpus(probe, config, with_truth=True),
        batch_size=batch_size,
        sampler=CorpusSampler(batches * batch_size),
        num_workers=workers,
    )
    iterator = iter(loader)
    next(iterator)  # workers started, first batch out
    started = time.perf_counter()
    count = 0
    for batch in iterator:
        count += len(batch["x"])
    return count / (time.perf_counter() - started)


def training_rate(probe, batches: int, batch_size: int) -> float:
    import dataclasses

    import torch
    from torch.utils.data import DataLoader

    from ptychopinn.config import ModelConfig, TrainingConfig
    from ptychopinn.data import CorpusConfig, CorpusSampler, SimulatedCorpus
    from ptychopinn.models import PINNModule

    corpus = SimulatedCorpus(probe, CorpusConfig(seed=0), with_truth=True)
    data = list(DataLoader(corpus, batch_size=batch_size, sampler=CorpusSampler(4 * batch_size)))
    module = PINNModule(
        model=dataclasses.asdict(ModelConfig()),
        training=dataclasses.asdict(TrainingConfig(loss="supervised")),
        channels=1,
        size=probe.shape[-1],
        input_normalisation="per_scan",
        probe=torch.from_numpy(probe),
    )
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    started, count = None, 0
    for step in range(batches + 1):
        if step == 1:
            started = time.perf_counter()  # the first step warms up
        batch = data[step % len(data)]
        loss, _ = module._loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        count += len(batch["x"]) if step else 0
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output", default="benchmarks/results/corpus.json")
    args = parser.parse_args()

    from ptychopinn.data import CorpusConfig
    from ptychopinn.simulate import SimulationConfig
    from ptychopinn.simulate.simulator import make_probe

    probe = make_probe(SimulationConfig(pattern_size=64))[None]
    rows = []
    for kinds in (
        ("lines",),
        ("grf",),
        ("dead_leaves",),
        ("natural",),
        ("lines", "grf", "dead_leaves", "natural"),
    ):
        config = CorpusConfig(object_kinds=kinds, seed=0)
        for workers in (0, 1, 2):
            rate = loader_rate(probe, config, workers, args.batches, args.batch_size)
            rows.append({"object_kinds": list(kinds), "workers": workers, "items_per_second": rate})
            print(f"{'+'.join(kinds):<32} workers {workers}: {rate:7.0f} items/s")
    consumed = training_rate(probe, args.batches, args.batch_size)
    print(f"training (fno, supervised, batch {args.batch_size}): {consumed:7.0f} items/s")
    report = {
        "benchmark": "corpus",
        "machine": machine(),
        "pattern_size": 64,
        "batch_size": args.batch_size,
        "loading": rows,
        "training_items_per_second": consumed,
    }
    write_results(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
