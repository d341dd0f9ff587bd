"""Quality of reconstructions against ground truth (physics.md, "Evaluation")."""

from .metrics import (
    ChannelMetrics,
    ObjectComparison,
    compare_objects,
    covered_region,
    remove_phase_ramp,
)

__all__ = [
    "ChannelMetrics",
    "ObjectComparison",
    "compare_objects",
    "covered_region",
    "remove_phase_ramp",
]
