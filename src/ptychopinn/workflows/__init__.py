"""User-level jobs composed from the rest of the package; the CLI calls only these."""

from ..config import (
    ACCELERATORS,
    GENERATOR_NAMES,
    LOGGERS,
    LOSSES,
    PROBE_CALIBRATIONS,
    SCHEDULERS,
    STRATEGIES,
    RunConfig,
    load_run_config,
)
from ..io import FileReport, ScanFileError, ScanValidationError, inspect_file
from ..simulate import OBJECT_KINDS, PROBE_KINDS, SCAN_KINDS, SimulationConfig
from .example import ExampleResult, run_example
from .figures import plot_scan_overview
from .simulation import simulate_to_file
from .training import TrainResult, train

train_model = train  # the CLI's name for it, beside its own `train` parser

__all__ = [
    "ACCELERATORS",
    "GENERATOR_NAMES",
    "LOGGERS",
    "LOSSES",
    "OBJECT_KINDS",
    "PROBE_CALIBRATIONS",
    "PROBE_KINDS",
    "SCAN_KINDS",
    "SCHEDULERS",
    "STRATEGIES",
    "ExampleResult",
    "FileReport",
    "RunConfig",
    "ScanFileError",
    "ScanValidationError",
    "SimulationConfig",
    "TrainResult",
    "inspect_file",
    "load_run_config",
    "plot_scan_overview",
    "run_example",
    "simulate_to_file",
    "train",
    "train_model",
]
