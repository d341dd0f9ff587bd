"""User-level jobs composed from the rest of the package; the CLI calls only these."""

from ..io import FileReport, ScanFileError, ScanValidationError, inspect_file
from ..simulate import OBJECT_KINDS, PROBE_KINDS, SCAN_KINDS, SimulationConfig
from .example import ExampleResult, run_example
from .figures import plot_scan_overview
from .simulation import simulate_to_file

__all__ = [
    "OBJECT_KINDS",
    "PROBE_KINDS",
    "SCAN_KINDS",
    "ExampleResult",
    "FileReport",
    "ScanFileError",
    "ScanValidationError",
    "SimulationConfig",
    "inspect_file",
    "plot_scan_overview",
    "run_example",
    "simulate_to_file",
]
