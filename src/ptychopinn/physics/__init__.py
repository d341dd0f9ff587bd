"""Physics operators in torch: batched, differentiable, on CPU and GPU (docs/conventions.md).

Depends on nothing else in the package.
"""

from .forward import (
    amplitude_mae,
    as_probe_modes,
    diffraction_intensity,
    exit_waves,
    poisson_deviance,
    poisson_nll,
)
from .overlap import (
    disk_weight,
    enforce_overlap,
    extract_from_region,
    merge_patches,
    probe_weight,
    region_positions,
    region_size,
)
from .probe import add_probe_modes, apply_probe_support, orthogonalize_modes
from .projection import data_consistency_step, replace_modulus
from .propagation import far_field, far_field_inverse, fresnel_propagate, fresnel_transfer_function
from .stitching import GrowingStitcher, PatchStitcher, StitchedObject, canvas_shape, stitch_patches
from .translation import extract_patches, scatter_patches, translate

__all__ = [
    "GrowingStitcher",
    "PatchStitcher",
    "add_probe_modes",
    "apply_probe_support",
    "orthogonalize_modes",
    "StitchedObject",
    "amplitude_mae",
    "as_probe_modes",
    "canvas_shape",
    "data_consistency_step",
    "diffraction_intensity",
    "disk_weight",
    "enforce_overlap",
    "exit_waves",
    "extract_from_region",
    "extract_patches",
    "far_field",
    "far_field_inverse",
    "fresnel_propagate",
    "fresnel_transfer_function",
    "merge_patches",
    "poisson_deviance",
    "poisson_nll",
    "probe_weight",
    "region_positions",
    "region_size",
    "replace_modulus",
    "scatter_patches",
    "stitch_patches",
    "translate",
]
