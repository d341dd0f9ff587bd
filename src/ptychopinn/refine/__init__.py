"""Physics refinement of object, probe and positions through the forward model."""

from .engine import (
    OPTIMIZERS,
    PARAMETERIZATIONS,
    REFINE_LOSSES,
    REFINE_SCHEDULERS,
    RefinementConfig,
    RefinementProgress,
    RefinementResult,
    constant_object,
    illumination_map,
    refine_object,
    total_variation,
)

__all__ = [
    "OPTIMIZERS",
    "PARAMETERIZATIONS",
    "REFINE_LOSSES",
    "REFINE_SCHEDULERS",
    "RefinementConfig",
    "RefinementProgress",
    "RefinementResult",
    "constant_object",
    "illumination_map",
    "refine_object",
    "total_variation",
]
