"""Quality of reconstructions against ground truth (docs/conventions.md, "Evaluation")."""

from .frc import FRCResult, fourier_ring_correlation, half_bit_threshold
from .metrics import ChannelMetrics, ObjectComparison, compare_objects, covered_region, remove_phase_ramp

__all__ = [
    "ChannelMetrics",
    "FRCResult",
    "ObjectComparison",
    "compare_objects",
    "covered_region",
    "fourier_ring_correlation",
    "half_bit_threshold",
    "remove_phase_ramp",
]
