"""Training data: grouping positions into solution regions, datasets, normalisation."""

from .dataset import GroupedDiffraction, input_scale, make_dataloader
from .grouping import Groups, group_positions, split_positions

__all__ = [
    "GroupedDiffraction",
    "Groups",
    "group_positions",
    "input_scale",
    "make_dataloader",
    "split_positions",
]
