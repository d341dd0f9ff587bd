"""Training, checked on the real Trainer, DataLoader and optimiser after tiny CPU fits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import SingleDeviceStrategy

from ptychopinn.cli.main import build_parser, main, train_overrides
from ptychopinn.config import (
    DataConfig,
    ExecutionConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    load_run_config,
)
from ptychopinn.io import write_scan
from ptychopinn.models.generators import FNOGenerator, HybridGenerator
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows import train

TINY_MODEL = ["--width", "4", "--depth", "2", "--modes", "4"]


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory) -> Path:
    scan = simulate_scan(
        SimulationConfig(
            pattern_size=16,
            n_positions=36,
            step_px=3.0,
            object_kind="grf",
            photons_per_pattern=1e4,
            include_patches=True,
            seed=2,
        )
    )
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    write_scan(scan, path)
    return path


@pytest.fixture(autouse=True)
def restore_determinism():
    yield
    torch.use_deterministic_algorithms(False)


def run_cli_config(scan_file, tmp_path, *flags):
    args = build_parser().parse_args(
        [
            "train",
            "--train-data",
            str(scan_file),
            "--output-dir",
            str(tmp_path / "run"),
            "--no-progress-bar",
            *TINY_MODEL,
            *flags,
        ]
    )
    return load_run_config(args.config, train_overrides(args)), args


def test_every_execution_flag_reaches_the_trainer_loader_and_optimiser(scan_file, tmp_path):
    config, args = run_cli_config(
        scan_file,
        tmp_path,
        "--generator",
        "hybrid",
        "--gridsize",
        "2",
        "--n-groups",
        "20",
        "--epochs",
        "2",
        "--batch-size",
        "5",
        "--learning-rate",
        "3e-3",
        "--accelerator",
        "cpu",
        "--devices",
        "1",
        "--strategy",
        "single_device",
        "--precision",
        "bf16-mixed",
        "--deterministic",
        "--seed",
        "7",
        "--num-workers",
        "1",
        "--pin-memory",
        "--gradient-clip-val",
        "0.25",
        "--gradient-clip-algorithm",
        "value",
        "--accumulate-grad-batches",
        "2",
        "--scheduler",
        "cosine",
        "--logger",
        "csv",
        "--checkpoint-every",
        "1",
        "--save-top-k",
        "2",
        "--early-stopping-patience",
        "5",
        "--time-budget",
        "600",
        "--val-fraction",
        "0.25",
        "--log-every-n-steps",
        "1",
    )
    result = train(config, args.output_dir)
    trainer, loader = result.trainer, result.train_loader
    assert trainer.max_epochs == 2 and trainer.current_epoch == 2
    assert isinstance(trainer.accelerator, CPUAccelerator) and trainer.num_devices == 1
    assert isinstance(trainer.strategy, SingleDeviceStrategy)
    assert trainer.precision == "bf16-mixed"
    assert trainer.gradient_clip_val == 0.25 and trainer.gradient_clip_algorithm == "value"
    assert trainer.accumulate_grad_batches == 2
    assert torch.are_deterministic_algorithms_enabled()
    assert loader.batch_size == 5 and loader.num_workers == 1 and loader.pin_memory
    optimizer = trainer.optimizers[0]
    assert optimizer.param_groups[0]["initial_lr"] == pytest.approx(3e-3)
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert isinstance(trainer.logger, CSVLogger)
    assert trainer.progress_bar_callback is None
    checkpoint = next(cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint))
    assert checkpoint.save_top_k == 2 and checkpoint._every_n_epochs == 1 and checkpoint.monitor == "val_loss"
    stopper = next(cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping))
    assert stopper.patience == 5
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, Timer))
    assert timer._duration == 600
    assert isinstance(result.module.net.generator, HybridGenerator)
    assert len(loader.dataset) == 20 and loader.dataset[0]["x"].shape == (4, 16, 16)
    assert result.val_loader is not None
    # the seed reached the split and the grouping
    assert result.summary["train_groups"] == 20
    # outputs: effective configuration, checkpoints, per-epoch logs, summary
    out = Path(args.output_dir)
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["execution"]["seed"] == 7 and written["model"]["generator"] == "hybrid"
    assert (out / "checkpoints" / "last.ckpt").is_file()
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    epochs_logged = {row["epoch"] for row in rows if row.get("train_loss")}
    assert epochs_logged == {"0", "1"}
    assert any(row.get("val_loss") for row in rows)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["epochs_completed"] == 2


def _logger_config(scan_file, out, kind):
    return run_cli_config(
        scan_file, out, "--epochs", "2", "--logger", kind, "--accelerator", "cpu", "--num-nodes", "1"
    )


def test_csv_logger_writes_a_table_that_csv_reads(scan_file, tmp_path):
    import csv

    config, args = _logger_config(scan_file, tmp_path, "csv")
    train(config, args.output_dir)
    (table,) = (tmp_path / "run" / "logs").rglob("metrics.csv")
    with open(table) as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train_loss")]
    assert len(rows) == 2 and all(np.isfinite(float(row["train_loss"])) for row in rows)


def test_tensorboard_logger_writes_events_that_tensorboard_reads(scan_file, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, args = _logger_config(scan_file, tmp_path, "tensorboard")
    result = train(config, args.output_dir)
    assert type(result.trainer.logger).__name__ == "TensorBoardLogger"
    (events,) = (tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    losses = [event.value for event in accumulator.Scalars("train_loss")]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert losses[-1] == pytest.approx(result.summary["metrics"]["train_loss"], rel=1e-6)


def test_mlflow_logger_writes_a_run_to_a_local_store_that_mlflow_reads(scan_file, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    config, args = _logger_config(scan_file, tmp_path, "mlflow")
    result = train(config, args.output_dir)
    store = tmp_path / "run" / "mlflow.db"
    assert store.is_file()  # local: nothing went over the network
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("ptychopinn").experiment_id])
    history = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert len(history) == 2 and history[-1] == pytest.approx(
        result.summary["metrics"]["train_loss"], rel=1e-6
    )
    assert run.data.params["learning_rate"] == "0.001"


def test_optional_loggers_are_refused_clearly_when_not_installed(scan_file, tmp_path, monkeypatch):
    import sys

    for name in ("tensorboard", "mlflow"):  # None in sys.modules: "import name" fails
        monkeypatch.setitem(sys.modules, name, None)
    for kind in ("tensorboard", "mlflow"):
        config, args = _logger_config(scan_file, tmp_path / kind, kind)
        with pytest.raises(ValueError, match=f"needs the {kind} extra"):
            train(config, args.output_dir)


def test_default_generator_and_other_choices_reach_the_network(scan_file, tmp_path):
    config, args = run_cli_config(
        scan_file,
        tmp_path,
        "--epochs",
        "1",
        "--logger",
        "none",
        "--accelerator",
        "cpu",
        "--scheduler",
        "plateau",
    )
    result = train(config, args.output_dir)
    assert isinstance(result.module.net.generator, FNOGenerator)  # the measured best
    assert result.trainer.logger is None
    assert isinstance(
        result.trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
    )
    assert result.trainer.lr_scheduler_configs[0].monitor == "train_loss"


class StepRecorder:
    """Records, after each optimizer step, the largest gradient entry it used.

    Lightning runs the closure (backward, then clipping) inside ``optimizer.step``, so a
    post-hook sees the gradients exactly as the update consumed them.
    """

    def __init__(self, optimizer):
        self.max_grad: list[float] = []
        optimizer.register_step_post_hook(self)

    def __call__(self, optimizer, args, kwargs):
        grads = [
            p.grad.abs().max() for g in optimizer.param_groups for p in g["params"] if p.grad is not None
        ]
        self.max_grad.append(float(torch.stack(grads).max()))


def fit_recording_steps(scan_file, tmp_path, name, *flags):
    from lightning.pytorch.callbacks import Callback

    recorders = []

    class Attach(Callback):
        def on_train_start(self, trainer, pl_module):
            recorders.append(StepRecorder(trainer.optimizers[0]))

    config, args = run_cli_config(
        scan_file,
        tmp_path / name,
        "--epochs",
        "1",
        "--batch-size",
        "6",
        "--logger",
        "none",
        "--accelerator",
        "cpu",
        *flags,
    )
    import ptychopinn.workflows.training as training

    original = training.build_trainer

    def with_recorder(*a, **k):
        trainer = original(*a, **k)
        trainer.callbacks.append(Attach())
        return trainer

    training.build_trainer = with_recorder
    try:
        result = train(config, args.output_dir)
    finally:
        training.build_trainer = original
    return result, recorders[0]


def test_gradient_accumulation_and_clipping_act_on_the_optimizer_steps(scan_file, tmp_path):
    plain, plain_steps = fit_recording_steps(scan_file, tmp_path, "plain")
    batches = len(plain.train_loader)  # 36 groups / 6
    assert len(plain_steps.max_grad) == batches == plain.trainer.global_step
    accumulated, acc_steps = fit_recording_steps(scan_file, tmp_path, "acc", "--accumulate-grad-batches", "3")
    assert len(acc_steps.max_grad) == batches // 3 == accumulated.trainer.global_step
    assert max(plain_steps.max_grad) > 1e-3
    _, clipped = fit_recording_steps(
        scan_file,
        tmp_path,
        "clip",
        "--gradient-clip-val",
        "1e-4",
        "--gradient-clip-algorithm",
        "value",
    )
    assert max(clipped.max_grad) <= 1e-4 + 1e-12


def test_deterministic_runs_with_a_seed_give_bit_identical_weights(scan_file, tmp_path):
    weights = []
    for name in ("a", "b"):
        config, args = run_cli_config(
            scan_file,
            tmp_path / name,
            "--epochs",
            "2",
            "--gridsize",
            "2",
            "--deterministic",
            "--seed",
            "3",
            "--logger",
            "none",
            "--accelerator",
            "cpu",
            "--batch-size",
            "4",
        )
        weights.append(train(config, args.output_dir).module.state_dict())
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    config, args = run_cli_config(
        scan_file,
        tmp_path / "c",
        "--epochs",
        "2",
        "--gridsize",
        "2",
        "--deterministic",
        "--seed",
        "4",
        "--logger",
        "none",
        "--accelerator",
        "cpu",
        "--batch-size",
        "4",
    )
    other = train(config, args.output_dir).module.state_dict()
    assert not all(torch.equal(weights[0][k], other[k]) for k in other)


def test_training_lowers_the_poisson_loss(scan_file, tmp_path):
    config, args = run_cli_config(
        scan_file,
        tmp_path,
        "--epochs",
        "1",
        "--logger",
        "none",
        "--accelerator",
        "cpu",
        "--batch-size",
        "4",
        "--learning-rate",
        "3e-3",
    )
    first = train(config, args.output_dir).summary["metrics"]["train_loss"]
    config, args = run_cli_config(
        scan_file,
        tmp_path,
        "--epochs",
        "8",
        "--logger",
        "none",
        "--accelerator",
        "cpu",
        "--batch-size",
        "4",
        "--learning-rate",
        "3e-3",
    )
    later = train(config, args.output_dir, overwrite=True).summary["metrics"]["train_loss"]
    assert later < first


def test_resume_continues_from_the_last_checkpoint(scan_file, tmp_path):
    config, args = run_cli_config(
        scan_file, tmp_path, "--epochs", "1", "--logger", "none", "--accelerator", "cpu"
    )
    first = train(config, args.output_dir)
    steps = first.trainer.global_step
    config2 = config.updated({"training": {"epochs": 3}})
    resumed = train(config2, args.output_dir, resume="last")
    assert resumed.trainer.current_epoch == 3
    assert resumed.trainer.global_step == 3 * steps
    with pytest.raises(ValueError, match="not found"):
        train(config2, tmp_path / "elsewhere", resume="last")


def test_probe_refinement_and_supervised_mode(scan_file, tmp_path):
    config, args = run_cli_config(
        scan_file,
        tmp_path,
        "--epochs",
        "2",
        "--logger",
        "none",
        "--accelerator",
        "cpu",
        "--probe-trainable",
    )
    result = train(config, args.output_dir)
    probe = result.module.net.forward_model.probe_real
    assert isinstance(probe, torch.nn.Parameter)
    assert any(g.get("name") == "probe" for g in result.trainer.optimizers[0].param_groups)
    from ptychopinn.io import read_scan

    initial = torch.view_as_real(torch.from_numpy(read_scan(scan_file).probe_modes))
    assert not torch.allclose(probe.detach(), initial)
    config, args = run_cli_config(
        scan_file,
        tmp_path / "sup",
        "--epochs",
        "1",
        "--logger",
        "none",
        "--accelerator",
        "cpu",
        "--loss",
        "supervised",
    )
    supervised = train(config, args.output_dir)
    assert "truth" in supervised.train_loader.dataset[0]
    assert np.isfinite(supervised.summary["metrics"]["train_loss"])


def test_config_precedence_defaults_file_flags(tmp_path, scan_file):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        yaml.safe_dump({"training": {"epochs": 3}, "execution": {"batch_size": 4, "seed": 9}})
    )
    args = build_parser().parse_args(
        [
            "train",
            "--config",
            str(config_file),
            "--output-dir",
            str(tmp_path),
            "--batch-size",
            "2",
            "--train-data",
            str(scan_file),
        ]
    )
    config = load_run_config(args.config, train_overrides(args))
    assert config.training.epochs == 3  # file over default
    assert config.execution.batch_size == 2  # flag over file
    assert config.execution.seed == 9
    assert config.execution.learning_rate == ExecutionConfig().learning_rate  # default
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"model": {"generator": "cnn"}}))
    assert load_run_config(json_file).model.generator == "cnn"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"execution": {"batch_sise": 4}}))
    with pytest.raises(ValueError, match="unknown field.*batch_sise.*execution"):
        load_run_config(bad)
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("section", "field", "value", "fragment"),
    [
        (DataConfig, "gridsize", 0, "must be >= 1"),
        (DataConfig, "n_groups", 0, "must be >= 1"),
        (DataConfig, "val_fraction", 1.0, "must be < 1"),
        (DataConfig, "photons_per_pattern", -1.0, "must be > 0"),
        (ModelConfig, "generator", "unet", "must be one of cnn, fno, hybrid"),
        (ModelConfig, "width", 0, "must be >= 1"),
        (ModelConfig, "probe_calibration", "maybe", "must be one of"),
        (ModelConfig, "amplitude_max", 0.0, "must be > 0"),
        (ModelConfig, "unroll_steps", -1, "must be >= 0"),
        (ModelConfig, "unroll_steps", 65, "must be <= 64"),
        (TrainingConfig, "epochs", 0, "must be >= 1"),
        (TrainingConfig, "loss", "mse", "must be one of"),
        (TrainingConfig, "time_budget_s", float("nan"), "finite"),
        (ExecutionConfig, "accelerator", "quantum", "must be one of auto, cpu"),
        (ExecutionConfig, "devices", 0, "count >= 1"),
        (ExecutionConfig, "devices", "two", "must be auto"),
        (ExecutionConfig, "num_nodes", 0, "must be >= 1"),
        (ExecutionConfig, "strategy", "magic", "must be one of"),
        (ExecutionConfig, "precision", "8-true", "must be one of"),
        (ExecutionConfig, "deterministic", "yes", "true or false"),
        (ExecutionConfig, "seed", -1, "must be >= 0"),
        (ExecutionConfig, "gradient_clip_val", -1.0, "must be >= 0"),
        (ExecutionConfig, "accumulate_grad_batches", 0, "must be >= 1"),
        (ExecutionConfig, "num_workers", -2, "must be >= 0"),
        (ExecutionConfig, "pin_memory", 1, "true or false"),
        (ExecutionConfig, "learning_rate", 0.0, "must be > 0"),
        (ExecutionConfig, "scheduler", "warp", "must be one of"),
        (ExecutionConfig, "batch_size", 0, "must be >= 1"),
        (ExecutionConfig, "inference_batch_size", 0, "must be >= 1"),
        (ExecutionConfig, "logger", "wandb", "must be one of none, csv"),
        (ExecutionConfig, "checkpoint_every_n_epochs", 0, "must be >= 1"),
        (ExecutionConfig, "save_top_k", -2, "must be >= -1"),
        (ExecutionConfig, "monitor", "", "metric name"),
        (ExecutionConfig, "early_stopping_patience", 0, "must be >= 1"),
    ],
)
def test_each_bad_value_is_a_clear_error(section, field, value, fragment):
    with pytest.raises(ValueError, match=fragment) as caught:
        section(**{field: value})
    assert f".{field} = " in str(caught.value)


def test_neighbourhood_must_hold_a_group():
    with pytest.raises(ValueError, match=r"data.k_neighbors = 2: must be >= C - 1 = 3"):
        DataConfig(gridsize=2, k_neighbors=2)


def test_cli_refuses_bad_values_before_training(scan_file, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", "--train-data", str(scan_file), "--output-dir", str(out), "--devices", "zero"])
    assert code == 2 and "execution.devices" in capsys.readouterr().err
    assert not out.exists()
    code = main(["train", "--train-data", str(tmp_path / "missing.npz"), "--output-dir", str(out)])
    assert code == 2 and "no such file" in capsys.readouterr().err
    assert not (out / "checkpoints").exists()
    with pytest.raises(SystemExit):
        main(["train", "--output-dir", str(out), "--generator", "unet"])


def test_cli_train_end_to_end_with_aliases(scan_file, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "train",
            "--train_data_file",
            str(scan_file),
            "--test_data_file",
            str(scan_file),
            "--output_dir",
            str(out),
            "--nepochs",
            "1",
            "--n_images",
            "12",
            "--no-progress-bar",
            *TINY_MODEL,
        ]
    )
    assert code == 0
    assert "trained 1 epoch" in capsys.readouterr().out
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["train_groups"] == 12 and summary["validation_groups"] == 12
    assert "val_loss" in summary["metrics"]


def test_mlflow_tracking_uri_flag_picks_the_store(scan_file, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "elsewhere.db"
    config, args = _logger_config(scan_file, tmp_path, "mlflow")
    config = config.updated({"execution": {"mlflow_tracking_uri": f"sqlite:///{store}"}})
    flags = build_parser().parse_args(
        ["train", "--output-dir", "x", "--mlflow-tracking-uri", "sqlite:///s.db"]
    )
    assert train_overrides(flags)["execution"]["mlflow_tracking_uri"] == "sqlite:///s.db"
    train(config, args.output_dir)
    assert store.is_file() and not (tmp_path / "run" / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("ptychopinn").experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2


def test_region_generator_trains_at_gridsize_2_and_its_bundle_predicts_the_same(scan_file, tmp_path):
    from ptychopinn.io import read_scan
    from ptychopinn.models.generators import RegionGenerator
    from ptychopinn.workflows import load_model_bundle, predict_object

    config, args = run_cli_config(
        scan_file, tmp_path, "--generator", "region", "--gridsize", "2", "--n-groups", "12",
        "--epochs", "1", "--batch-size", "4", "--logger", "none", "--accelerator", "cpu",
    )  # fmt: skip
    result = train(config, args.output_dir)
    assert isinstance(result.module.net.generator, RegionGenerator)
    assert np.isfinite(result.summary["metrics"]["train_loss"])
    scan = read_scan(scan_file)
    loaded = load_model_bundle(Path(args.output_dir) / "model.zip")
    assert isinstance(loaded.module.net.generator, RegionGenerator) and loaded.gridsize == 2
    first = predict_object(result.module.eval(), scan, gridsize=2, progress=False)
    again = predict_object(loaded.module, scan, gridsize=2, progress=False)
    np.testing.assert_array_equal(first.object, again.object)


def test_unroll_flags_reach_the_unrolled_generator(scan_file, tmp_path):
    from ptychopinn.models.generators import UnrolledGenerator

    config, args = run_cli_config(
        scan_file, tmp_path, "--generator", "unrolled", "--gridsize", "2", "--unroll-steps", "2",
        "--no-unroll-corrections", "--n-groups", "8", "--epochs", "1", "--batch-size", "4",
        "--logger", "none", "--accelerator", "cpu",
    )  # fmt: skip
    assert config.model.unroll_steps == 2 and config.model.unroll_corrections is False
    generator = train(config, args.output_dir).module.net.generator
    assert isinstance(generator, UnrolledGenerator)
    assert generator.steps.shape == (2,) and len(generator.corrections) == 0
    config, _ = run_cli_config(scan_file, tmp_path, "--generator", "unrolled", "--unroll-steps", "3")
    assert config.model.unroll_steps == 3 and config.model.unroll_corrections is True
