"""User-level jobs composed from the rest of the package; the CLI calls only these."""

from ..common import ACCELERATORS, DeviceOptions, output_dir_option
from ..config import (
    LOGGERS,
    LOSSES,
    PROBE_CALIBRATIONS,
    SCHEDULERS,
    STRATEGIES,
    DataConfig,
    ExecutionConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    load_run_config,
)
from ..data import CorpusConfig
from ..io import BundleError, FileReport, ScanFileError, ScanValidationError
from ..models import list_generators
from ..options import (
    Options,
    field_kinds,
    format_number,
    option,
    option_choices,
    option_fields,
    plugin_options_class,
)
from ..refine import REFINE_LOSSES, SOLVERS, RefinementConfig, RefinementResult
from ..simulate import OBJECT_KINDS, PROBE_KINDS, SCAN_KINDS, SimulationConfig
from .bundles import (
    InspectInputs,
    InspectOptions,
    LoadedModel,
    inspect_file,
    load_model_bundle,
    save_model_bundle,
)
from .evaluation import EvaluateInputs, EvaluateOptions, evaluate
from .example import ExampleInputs, ExampleOptions, run_example
from .figures import plot_scan_overview
from .inference import InferInputs, InferOptions, LoaderOptions, infer, predict_object
from .lightning_runs import quiet_lightning
from .live import WatchInputs, WatchOptions, watch
from .pretraining import PretrainConfig, pretrain
from .reconstruction import ReconstructInputs, ReconstructOptions, reconstruct, reconstruct_scan
from .results import (
    EvaluationResult,
    ExampleResult,
    InferenceResult,
    Reconstruction,
    ReconstructResult,
    TrainResult,
    WatchResult,
)
from .run_folder import claim_output_folder, is_secondary_process
from .simulation import SimulateOptions, simulate, simulate_to_file, stream_to_file
from .training import TrainInputs, train

GENERATOR_NAMES = list_generators()  # the registry's names, for the CLI's choices
train_model = train  # the CLI's names, beside its own `train` and `infer` parsers
pretrain_model = pretrain
infer_scan = infer
reconstruct_file = reconstruct
evaluate_reconstruction = evaluate
watch_scan = watch

__all__ = [
    "WatchOptions",
    "WatchResult",
    "stream_to_file",
    "watch",
    "watch_scan",
    "format_number",
    "DeviceOptions",
    "quiet_lightning",
    "EvaluateInputs",
    "ExampleInputs",
    "InferInputs",
    "InspectInputs",
    "LoaderOptions",
    "ReconstructInputs",
    "TrainInputs",
    "WatchInputs",
    "EvaluateOptions",
    "ExampleOptions",
    "InferOptions",
    "InspectOptions",
    "SimulateOptions",
    "output_dir_option",
    "simulate",
    "Options",
    "ReconstructOptions",
    "field_kinds",
    "option",
    "option_choices",
    "plugin_options_class",
    "option_fields",
    "claim_output_folder",
    "is_secondary_process",
    "ACCELERATORS",
    "GENERATOR_NAMES",
    "LOGGERS",
    "LOSSES",
    "OBJECT_KINDS",
    "SOLVERS",
    "REFINE_LOSSES",
    "PROBE_CALIBRATIONS",
    "PROBE_KINDS",
    "SCAN_KINDS",
    "SCHEDULERS",
    "STRATEGIES",
    "BundleError",
    "CorpusConfig",
    "PretrainConfig",
    "EvaluationResult",
    "ExampleResult",
    "DataConfig",
    "ExecutionConfig",
    "ModelConfig",
    "TrainingConfig",
    "InferenceResult",
    "LoadedModel",
    "Reconstruction",
    "FileReport",
    "ReconstructResult",
    "RefinementConfig",
    "RefinementResult",
    "RunConfig",
    "ScanFileError",
    "ScanValidationError",
    "SimulationConfig",
    "TrainResult",
    "evaluate",
    "evaluate_reconstruction",
    "infer",
    "infer_scan",
    "inspect_file",
    "load_model_bundle",
    "predict_object",
    "pretrain",
    "pretrain_model",
    "reconstruct",
    "reconstruct_file",
    "reconstruct_scan",
    "save_model_bundle",
    "load_run_config",
    "plot_scan_overview",
    "run_example",
    "simulate_to_file",
    "train",
    "train_model",
]
