"""Physics refinement of object, probe, positions and background through the forward model."""

from .engine import (
    RefinementResult,
    constant_object,
    linear_phase_ramp,
    refine_object,
    remove_phase_ramp,
)
from .loop import RefinementProgress
from .options import PARAMETERIZATIONS, REFINE_LOSSES, REFINE_SCHEDULERS, RefinementConfig
from .problem import RefinementProblem, illumination_map, total_variation
from .solvers import SOLVERS, Solver, register_solver

__all__ = [
    "PARAMETERIZATIONS",
    "REFINE_LOSSES",
    "REFINE_SCHEDULERS",
    "SOLVERS",
    "RefinementConfig",
    "RefinementProblem",
    "RefinementProgress",
    "RefinementResult",
    "Solver",
    "constant_object",
    "illumination_map",
    "linear_phase_ramp",
    "refine_object",
    "register_solver",
    "remove_phase_ramp",
    "total_variation",
]
