"""Workflow: pretrain one network per beamline set-up (``ptychopinn pretrain``).

The network is trained on a corpus simulated on the fly through the set-up's probe
(:class:`~ptychopinn.data.SimulatedCorpus`: many object classes, phase ranges, absorptions,
photon counts and scan steps), validated on a fixed held-out set of simulated items, and
saved as the usual bundle. Its inputs are normalised per scan, so it reconstructs scans at
any photon count in one pass (``infer``), starts ``reconstruct``, or is fine-tuned on a
user's scans with ``train --init-from``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import RunConfig
from ..data import CorpusConfig, CorpusSampler, SimulatedCorpus
from ..io import ScanFileError, read_ptychodus_product, read_scan, write_json, write_text
from ..io.ptychodus import hdf5_kind
from ..models import build_module
from ..options import Options, option
from ..simulate import PROBE_KINDS, SimulationConfig
from ..simulate.probes import probe_from_file
from ..simulate.simulator import make_probe
from .bundles import load_model_bundle, save_model_bundle
from .lightning_runs import (
    build_trainer,
    check_execution_fits_machine,
    checkpoint_paths,
    final_metrics,
    load_pretrained_weights,
    log,
    metrics_csv_of,
    resolve_resume,
)
from .report import training_curves, write_report
from .results import TrainResult
from .run_folder import claim_output_folder

#: Held-out items are drawn from this far into the corpus: never reached by training.
VALIDATION_BASE = 2**61


@dataclass(frozen=True)
class PretrainConfig(Options):
    """What to pretrain for.

    Attributes
    ----------
    probe : str
        A simulator probe (``focused``, ``gaussian``, at ``pattern_size`` and the simulator's
        default geometry) or a file holding one: a scan (NPZ, CXI, ptychodus directory), a
        ptychodus ``product.h5``, or a ``.npy``.
    pattern_size : int
        N for simulator probes (a file's probe sets its own).
    corpus : CorpusConfig
        What the on-the-fly corpus draws from.
    validation_items : int
        Size of the fixed held-out set (same distribution, items never used in training).
    """

    section = "pretrain"
    probe: str = option(
        "focused", "a simulator probe (focused, gaussian) or a file holding one: scan (NPZ, CXI, "
        "ptychodus directory), ptychodus product.h5, .npy", flags=("--probe",), metavar="PROBE",
        required=True,
    )  # fmt: skip
    pattern_size: int = option(
        64, "N for simulator probes (a file's probe sets its own)", flags=("--pattern-size", "-N"),
        minimum=2, group="corpus",
    )  # fmt: skip
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    validation_items: int = option(
        256, "fixed held-out items (0: no validation)", flags=("--validation-items",), minimum=0,
        group="corpus",
    )  # fmt: skip

    def check(self) -> None:
        if self.pattern_size % 2:
            self.fail("pattern_size", "must be an even integer >= 2")


def resolve_probe(spec: str, pattern_size: int = 64) -> np.ndarray:
    """The probe named by ``spec`` as complex64 ``(modes, N, N)`` (see :class:`PretrainConfig`)."""
    if spec in PROBE_KINDS:
        return make_probe(SimulationConfig(pattern_size=pattern_size, probe=spec))[None]
    path = Path(spec)
    if not path.exists():
        raise ScanFileError(
            f"no such file, and not a simulator probe ({', '.join(PROBE_KINDS)})", source=os.fspath(path)
        )
    if path.is_file() and path.suffix.lower() in (".h5", ".hdf5") and hdf5_kind(path) == "ptychodus-product":
        probe = read_ptychodus_product(path).probe
        probe = probe[0] if probe.ndim == 4 else probe
        return np.asarray(probe if probe.ndim == 3 else probe[None], dtype=np.complex64)
    if path.is_dir() or path.suffix.lower() in (".npz", ".cxi", ".h5", ".hdf5"):
        try:
            return read_scan(path).probe_modes.astype(np.complex64)
        except ScanFileError:
            if path.is_dir():
                raise
    probe = probe_from_file(path)
    return np.asarray(probe if probe.ndim == 3 else probe[None], dtype=np.complex64)


def build_corpus_loaders(
    probe: np.ndarray, pretrain: PretrainConfig, run: RunConfig, *, with_truth: bool
) -> tuple[DataLoader, DataLoader | None]:
    """The training loader (fresh items every epoch) and the fixed validation loader."""
    execution = run.execution
    corpus = pretrain.corpus
    if corpus.gridsize != run.data.gridsize:
        raise ValueError(f"corpus gridsize {corpus.gridsize} differs from data.gridsize {run.data.gridsize}")
    dataset = SimulatedCorpus(probe, corpus, with_truth=with_truth)
    options = dict(
        batch_size=execution.batch_size,
        num_workers=execution.num_workers,
        pin_memory=execution.pin_memory,
        persistent_workers=execution.num_workers > 0,
    )
    train_loader = DataLoader(dataset, sampler=CorpusSampler(corpus.samples_per_epoch), **options)
    if pretrain.validation_items == 0:
        return train_loader, None
    held_out = range(VALIDATION_BASE, VALIDATION_BASE + pretrain.validation_items)
    return train_loader, DataLoader(dataset, sampler=list(held_out), **options)


def pretrain(
    pretrain_config: PretrainConfig,
    run: RunConfig,
    output_dir: str | Path,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Pretrain a network on the simulated corpus; outputs go to ``output_dir``.

    ``run`` carries the model, training (loss, epochs, ``time_budget_s``, ``max_steps``) and
    execution options of ``train``; one epoch is ``corpus.samples_per_epoch`` items. Writes
    ``config.yaml``, ``pretrain.json`` (the corpus and probe), checkpoints, logs,
    ``training_summary.json``, ``report.html`` and the bundle ``model.zip`` (its manifest
    records the corpus, the probe and the budget).
    """
    if run.model.forward_model != "far_field":
        raise ValueError(
            f"model.forward_model = {run.model.forward_model}: the pretraining corpus is simulated in "
            "the far field only; train on the scan instead"
        )
    execution = run.execution
    check_execution_fits_machine(execution)
    resume_path = resolve_resume(resume, Path(output_dir))
    # the corpus's items hold data.gridsize^2 positions: recorded as used
    corpus = dataclasses.replace(pretrain_config.corpus, gridsize=run.data.gridsize)
    pretrain_config = dataclasses.replace(pretrain_config, corpus=corpus)
    probe = resolve_probe(pretrain_config.probe, pretrain_config.pattern_size)
    size = int(probe.shape[-1])
    probe_file = pretrain_config.probe if os.path.exists(str(pretrain_config.probe)) else None
    output_dir = claim_output_folder(
        output_dir, command="pretrain", overwrite=overwrite, resume=resume is not None,
        inputs=[probe_file, run.training.init_from],
    )  # fmt: skip
    write_text(output_dir / "config.yaml", run.to_yaml())
    described = {**asdict(pretrain_config), "pattern_size": size}
    write_json(output_dir / "pretrain.json", described)
    L.seed_everything(execution.seed, workers=True, verbose=False)

    supervised = run.training.loss == "supervised"
    train_loader, val_loader = build_corpus_loaders(probe, pretrain_config, run, with_truth=supervised)
    has_validation = val_loader is not None
    module = build_module(
        run,
        size=size,
        probe_modes=probe.shape[0],
        monitor=execution.resolved_monitor(has_validation),
        input_normalisation="per_scan",
        probe=torch.from_numpy(probe),
    )
    if run.training.init_from is not None:
        origin = f"training.init_from = {run.training.init_from}"
        load_pretrained_weights(module, load_model_bundle(run.training.init_from), origin)
    trainer = build_trainer(execution, run.training, output_dir, has_validation)
    started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_path)
    elapsed = time.perf_counter() - started

    metrics = final_metrics(trainer)
    summary: dict[str, Any] = {
        "pretrained": True,
        "probe": pretrain_config.probe,
        "epochs_completed": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "items_seen": trainer.global_step * execution.batch_size * execution.accumulate_grad_batches,
        "wall_time_s": elapsed,
        "metrics": metrics,
    }
    bundle = output_dir / "model.zip"
    if trainer.is_global_zero:
        save_model_bundle(
            module, bundle, run, pretrained=True, pretrain=described, epochs_completed=trainer.current_epoch,
            global_steps=trainer.global_step, wall_time_s=elapsed,
        )  # fmt: skip
        summary["bundle"] = str(bundle)
        write_json(output_dir / "training_summary.json", summary)
        curves = training_curves(output_dir, metrics_csv_of(trainer))
        write_report(
            output_dir,
            f"Pretraining for the {pretrain_config.probe} probe",
            images=[("loss per epoch", curves)] if curves else [],
            metrics=metrics,
            config={**run.to_dict(), "pretrain": described},
            details={k: v for k, v in summary.items() if k != "metrics"},
        )
    log.info("pretrained %d step(s) in %.1f s", trainer.global_step, elapsed)
    best, last = checkpoint_paths(trainer)
    return TrainResult(
        output_dir=output_dir, config=run, trainer=trainer, module=module, train_loader=train_loader,
        val_loader=val_loader, best_checkpoint=best, last_checkpoint=last, summary=summary, bundle=bundle,
    )  # fmt: skip
