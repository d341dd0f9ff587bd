"""Training data: grouping positions into solution regions, datasets, normalisation, the corpus."""

from .corpus import CorpusConfig, CorpusSampler, SimulatedCorpus
from .dataset import GroupedDiffraction, input_scale, make_dataloader
from .grouping import Groups, group_positions, split_positions
from .holdout import holdout_mask, parse_holdout_region

__all__ = [
    "CorpusConfig",
    "CorpusSampler",
    "SimulatedCorpus",
    "GroupedDiffraction",
    "Groups",
    "group_positions",
    "holdout_mask",
    "parse_holdout_region",
    "input_scale",
    "make_dataloader",
    "split_positions",
]
