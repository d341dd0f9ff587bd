"""Probe-centric pretraining: the on-the-fly corpus, ``pretrain``, ``train --init-from``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from ptychopinn.cli.main import main
from ptychopinn.data import CorpusConfig, CorpusSampler, SimulatedCorpus
from ptychopinn.io import write_scan
from ptychopinn.physics import diffraction_intensity
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.simulate.simulator import make_probe
from ptychopinn.workflows import load_model_bundle, load_run_config, train
from ptychopinn.workflows.pretraining import resolve_probe

N = 16
TINY = ["--width", "4", "--depth", "1", "--modes", "4"]


@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    return make_probe(SimulationConfig(pattern_size=N, probe="gaussian"))


def items(corpus: SimulatedCorpus, indices) -> list[dict]:
    return [corpus[i] for i in indices]


def test_the_corpus_is_reproducible_under_a_seed_whatever_the_workers(probe):
    config = CorpusConfig(gridsize=2, samples_per_epoch=6, seed=7)
    first = SimulatedCorpus(probe, config, with_truth=True)
    second = SimulatedCorpus(probe, config, with_truth=True)
    for a, b in zip(items(first, range(6)), items(second, range(6)), strict=True):
        for key in ("x", "counts", "offsets", "truth", "intensity_scale"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    serial = list(DataLoader(first, batch_size=3, sampler=CorpusSampler(6)))
    parallel = list(DataLoader(second, batch_size=3, sampler=CorpusSampler(6), num_workers=2))
    sampler = CorpusSampler(6)
    for a, b in zip(serial, parallel, strict=True):
        torch.testing.assert_close(a["counts"], b["counts"], rtol=0, atol=0)
    # the next epoch reads fresh items, told (set_epoch) or not
    sampler.set_epoch(1)
    assert list(sampler) == list(range(6, 12))
    assert list(sampler) == list(range(12, 18))
    sampler.set_epoch(1)
    assert not torch.equal(
        serial[0]["counts"], next(iter(DataLoader(first, batch_size=3, sampler=sampler)))["counts"]
    )


def test_the_corpus_varies_without_a_seed_and_across_its_ranges(probe):
    config = CorpusConfig(samples_per_epoch=4, seed=None)
    a, b = SimulatedCorpus(probe, config), SimulatedCorpus(probe, config)
    assert not torch.equal(a[0]["counts"], b[0]["counts"])
    seeded = SimulatedCorpus(probe, CorpusConfig(seed=0))
    draws = [seeded.draw(i) for i in range(400)]
    assert {d["kind"] for d in draws} == {"lines", "grf", "dead_leaves", "natural"}
    photons = np.array([d["photons"] for d in draws])
    assert photons.min() < 1e5 and photons.max() > 1e7  # several decades
    steps = np.array([d["step_px"] for d in draws]) / N
    assert steps.min() < 0.2 and steps.max() > 0.6  # high overlap to almost none


def test_corpus_counts_follow_the_forward_model_at_the_drawn_photon_count(probe):
    # pure phase objects: Parseval makes the expected total the photon count exactly
    config = CorpusConfig(amplitude_min=(1.0, 1.0), photons=(1e5, 1e5), seed=3)
    corpus = SimulatedCorpus(probe, config, with_truth=True)
    for item in items(corpus, range(5)):
        total = float(item["counts"].sum())
        assert total == pytest.approx(1e5, abs=6 * np.sqrt(1e5))
        expected = (
            diffraction_intensity(item["truth"][None], torch.from_numpy(probe))[0] * item["intensity_scale"]
        )
        assert float(expected.sum()) == pytest.approx(1e5, rel=1e-4)
        # per-item input normalisation: mean sum x^2 = (N/2)^2 (physics.md, network input)
        assert float((item["x"] ** 2).sum(dim=(-2, -1)).mean()) == pytest.approx((N / 2) ** 2, rel=1e-5)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained")
    code = main(["pretrain", "--probe", "gaussian", "-N", str(N), "--output-dir", str(out),
                 "--max-steps", "3", "--samples-per-epoch", "8", "--validation-items", "4",
                 "--batch-size", "4", "--accelerator", "cpu", "--no-progress-bar", "--logger", "csv",
                 *TINY])  # fmt: skip
    assert code == 0
    return out


def test_pretrain_runs_a_few_steps_and_writes_a_loadable_bundle(pretrained):
    loaded = load_model_bundle(pretrained / "model.zip")
    assert loaded.manifest["pretrained"] is True
    assert loaded.manifest["input_normalisation"] == "per_scan"
    assert loaded.manifest["global_steps"] == 3 and loaded.pattern_size == N
    assert loaded.manifest["pretrain"]["corpus"]["object_kinds"] == ["lines", "grf", "dead_leaves", "natural"]
    summary = json.loads((pretrained / "training_summary.json").read_text())
    assert summary["global_steps"] == 3 and np.isfinite(summary["metrics"]["val_loss"])
    np.testing.assert_allclose(
        loaded.module.net.forward_model.probe.numpy()[0],
        make_probe(SimulationConfig(pattern_size=N, probe="gaussian")),
    )


def test_init_from_starts_from_the_pretrained_weights(pretrained, tmp_path):
    scan = simulate_scan(
        SimulationConfig(pattern_size=N, n_positions=12, step_px=3.0, probe="gaussian", seed=2)
    )
    write_scan(scan, tmp_path / "scan.npz")
    # one batch holds every group, so the first step's loss does not depend on the order
    config = load_run_config(overrides={
        "data": {"train_data": str(tmp_path / "scan.npz")},
        "training": {"epochs": 1, "init_from": str(pretrained / "model.zip"), "loss": "poisson"},
        "execution": {"accelerator": "cpu", "batch_size": 12, "logger": "csv", "log_every_n_steps": 1,
                      "progress_bar": False},
    })  # fmt: skip
    result = train(config, tmp_path / "run")
    assert result.config.model.width == 4  # the bundle's architecture
    (table,) = (tmp_path / "run" / "logs").rglob("metrics.csv")
    with open(table) as handle:
        first_step_loss = next(float(row["loss"]) for row in csv.DictReader(handle) if row.get("loss"))
    batch = default_collate([result.train_loader.dataset[i] for i in range(len(result.train_loader.dataset))])
    reference = load_model_bundle(pretrained / "model.zip").module
    # the pretrained network, under the fine-tuning scan's probe and loss
    reference.net.forward_model.probe_real.copy_(result.module.net.forward_model.probe_real)
    reference.training_config = result.module.training_config
    with torch.no_grad():
        pretrained_loss = float(reference._loss(batch)[0])
        assert first_step_loss == pytest.approx(pretrained_loss, rel=1e-5)
        # a freshly initialised network of the same shape would start elsewhere
        for layer in reference.net.generator.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        assert float(reference._loss(batch)[0]) != pytest.approx(pretrained_loss, rel=1e-3)


def test_init_from_refuses_a_model_for_another_pattern_size(pretrained, tmp_path):
    scan = simulate_scan(SimulationConfig(pattern_size=32, n_positions=9, step_px=6.0, seed=2))
    write_scan(scan, tmp_path / "scan.npz")
    code = main(["train", "--train-data", str(tmp_path / "scan.npz"), "--output-dir", str(tmp_path / "run"),
                 "--init-from", str(pretrained / "model.zip"), "--epochs", "1",
                 "--accelerator", "cpu"])  # fmt: skip
    assert code == 2


def test_the_probe_comes_from_a_simulator_name_or_a_file(tmp_path):
    scan = simulate_scan(SimulationConfig(pattern_size=N, n_positions=9, step_px=3.0, seed=2))
    write_scan(scan, tmp_path / "scan.npz")
    np.testing.assert_array_equal(resolve_probe(str(tmp_path / "scan.npz")), scan.probe_modes)
    assert resolve_probe("focused", 32).shape == (1, 32, 32)
    with pytest.raises(Exception, match="not a simulator probe"):
        resolve_probe(str(tmp_path / "missing.npz"))


def test_pretrain_corpus_flags_reach_the_corpus(tmp_path):
    code = main(["pretrain", "--probe", "gaussian", "-N", str(N), "--output-dir", str(tmp_path),
                 "--max-steps", "1", "--samples-per-epoch", "4", "--validation-items", "0",
                 "--batch-size", "4", "--accelerator", "cpu", "--no-progress-bar", "--logger", "none",
                 "--object-kinds", "lines", "grf", "--photons", "1e5", "1e6", "--phase-range", "0.2", "1.0",
                 "--amplitude-min", "0.7", "0.9", "--step-fraction", "0.3", "0.5", "--corpus-seed", "9",
                 "--gridsize", "2", *TINY])  # fmt: skip
    assert code == 0
    corpus = load_model_bundle(tmp_path / "model.zip").manifest["pretrain"]["corpus"]
    assert corpus["object_kinds"] == ["lines", "grf"] and corpus["photons"] == [1e5, 1e6]
    assert corpus["phase_range"] == [0.2, 1.0] and corpus["amplitude_min"] == [0.7, 0.9]
    assert corpus["step_fraction"] == [0.3, 0.5] and corpus["seed"] == 9 and corpus["gridsize"] == 2


def test_pretrain_init_from_puts_an_fno_bundle_into_an_unrolled_network(pretrained, tmp_path, capsys):
    source = load_model_bundle(pretrained / "model.zip").module.net.generator
    out = tmp_path / "unrolled"
    code = main(["pretrain", "--probe", "gaussian", "-N", str(N), "--output-dir", str(out),
                 "--generator", "unrolled", "--gridsize", "2", "--init-from", str(pretrained / "model.zip"),
                 "--max-steps", "1", "--learning-rate", "1e-12", "--samples-per-epoch", "4",
                 "--validation-items", "0", "--batch-size", "2", "--accelerator", "cpu",
                 "--no-progress-bar", "--logger", "none", *TINY])  # fmt: skip
    assert code == 0
    loaded = load_model_bundle(out / "model.zip")
    assert loaded.gridsize == 2 and loaded.manifest["pretrained"] is True
    encoder = loaded.module.net.generator.encoder.state_dict()
    for name, tensor in source.state_dict().items():  # one step at lr 1e-12: still the fno's weights
        torch.testing.assert_close(encoder[name], tensor, atol=1e-6, rtol=0)
    # weights that cannot fit are refused, naming the bundle
    code = main(["pretrain", "--probe", "gaussian", "-N", str(N), "--output-dir", str(tmp_path / "bad"),
                 "--generator", "cnn", "--init-from", str(pretrained / "model.zip"), "--max-steps", "1",
                 "--validation-items", "0", "--accelerator", "cpu", "--no-progress-bar", "--logger", "none",
                 *TINY])  # fmt: skip
    assert code != 0
    assert "do not fit" in capsys.readouterr().err
