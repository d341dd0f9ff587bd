"""A training corpus simulated on the fly: many objects, one probe (or a family of probes).

Each item is a small simulated scan: a random object (lines, Gaussian random field, dead
leaves, natural image) with a random phase range and absorption, ``C = g^2`` neighbouring
positions on a local raster with a random step (high overlap to none), far-field patterns
through the probe at a random photon count (log-uniform over decades), Poisson noise. Item
``i`` is drawn from its own generator ``default_rng([seed, i])``, so the corpus is the same
for a seed whatever the number of DataLoader workers or the order of reading; the sampler
walks on to fresh items every epoch (``set_epoch``), so nothing repeats and nothing is
written to disk.

Items have the keys of :class:`~ptychopinn.data.GroupedDiffraction` (``x``, ``counts``,
``offsets``, ``indices``, ``truth``) plus ``intensity_scale``: the factor from the model's
probe (at its stored power) to this item's photon count, which the forward model applies.
The network input is normalised per item as per scan (docs/conventions.md, "Network input"), so a
pretrained network meets any photon count at inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..options import Options, option
from ..physics import diffraction_intensity, extract_patches
from ..simulate.objects import OBJECT_KINDS, make_object

#: Virtual corpus length: items are drawn lazily, so only the index range is this large.
CORPUS_LENGTH = 2**62


@dataclass(frozen=True)
class CorpusConfig(Options):
    """What the on-the-fly corpus draws from (ranges are inclusive, drawn uniformly).

    Attributes
    ----------
    gridsize : int
        ``g``: items hold ``g^2`` neighbouring positions.
    object_kinds : tuple of str
        Object classes drawn from (see :func:`~ptychopinn.simulate.objects.make_object`).
    phase_range : (float, float)
        Peak-to-peak phase (rad).
    amplitude_min : (float, float)
        Lowest amplitude (1 = pure phase object).
    photons : (float, float)
        Mean photons per pattern, drawn log-uniformly.
    step_fraction : (float, float)
        Scan step as a fraction of N (0.25: high overlap; 1: none). Only matters for g > 1.
    jitter_px : float
        Random displacement of each position (pixels).
    samples_per_epoch : int
        Items per epoch.
    seed : int or None
        Fixes every item; None draws a fresh corpus each time.
    """

    section = "corpus"
    gridsize: int = option(1, "g: items hold g^2 neighbouring positions", minimum=1, maximum=8)
    object_kinds: tuple[str, ...] = option(
        OBJECT_KINDS, "object classes drawn from", flags=("--object-kinds",), choices=OBJECT_KINDS,
        default_text="all",
    )  # fmt: skip
    phase_range: tuple[float, float] = option(
        (0.5, math.pi), "range of phase range (rad)", flags=("--phase-range",), minimum=0.0,
        metavar=("LOW", "HIGH"),
    )  # fmt: skip
    amplitude_min: tuple[float, float] = option(
        (0.4, 1.0), "range of amplitude min", flags=("--amplitude-min",), minimum=0.0, maximum=1.0,
        metavar=("LOW", "HIGH"),
    )  # fmt: skip
    photons: tuple[float, float] = option(
        (1e4, 1e8), "range of photons", flags=("--photons",), minimum=0.0, exclusive_minimum=True,
        metavar=("LOW", "HIGH"),
    )  # fmt: skip
    step_fraction: tuple[float, float] = option(
        (0.125, 0.75), "range of step fraction", flags=("--step-fraction",), minimum=0.0,
        exclusive_minimum=True, metavar=("LOW", "HIGH"),
    )  # fmt: skip
    jitter_px: float = option(0.5, "random displacement of each position, pixels", minimum=0.0)
    samples_per_epoch: int = option(2048, "items per epoch", flags=("--samples-per-epoch",), minimum=1)
    seed: int | None = option(
        0, "fixes every simulated item", flags=("--corpus-seed",), minimum=0, metavar="SEED"
    )

    def check(self) -> None:
        if not self.object_kinds:
            self.fail("object_kinds", f"choose from {', '.join(OBJECT_KINDS)}")
        for name in ("phase_range", "amplitude_min", "photons", "step_fraction"):
            low, high = getattr(self, name)
            if low > high:
                self.fail(name, "must be (low, high) with low <= high")


class SimulatedCorpus(Dataset):
    """Items simulated on demand through ``probe`` (see the module docstring).

    Parameters
    ----------
    probe : numpy.ndarray
        complex ``(N, N)`` or ``(modes, N, N)``, any power (the items say how to scale it).
    config : CorpusConfig
    with_truth : bool
        Also return the true object patches (``truth``).
    """

    def __init__(self, probe: np.ndarray, config: CorpusConfig, *, with_truth: bool = False):
        probe = np.asarray(probe)
        self.probe = torch.from_numpy((probe if probe.ndim == 3 else probe[None]).astype(np.complex64))
        self.size = int(self.probe.shape[-1])
        self.config = config
        self.with_truth = with_truth
        self.power = float(torch.sum(torch.abs(self.probe.to(torch.complex128)) ** 2))
        # a fresh corpus without a seed: one draw of entropy, fixed for this object's life
        self.seed = config.seed if config.seed is not None else int(np.random.SeedSequence().entropy % 2**63)

    def __len__(self) -> int:
        return CORPUS_LENGTH

    def draw(self, index: int) -> dict[str, Any]:
        """The random choices of item ``index`` (object class, phase, photons, step...)."""
        c = self.config
        rng = np.random.default_rng([self.seed, int(index)])
        return {
            "rng": rng,
            "kind": str(rng.choice(c.object_kinds)),
            "phase_range": float(rng.uniform(*c.phase_range)),
            "amplitude_min": float(rng.uniform(*c.amplitude_min)),
            "photons": float(np.exp(rng.uniform(np.log(c.photons[0]), np.log(c.photons[1])))),
            "step_px": float(rng.uniform(*c.step_fraction) * self.size),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c, size, g = self.config, self.size, self.config.gridsize
        choice = self.draw(index)
        rng = choice["rng"]
        step = choice["step_px"] if g > 1 else 0.0
        # local g x g raster (plus jitter) centred on the region
        grid = (np.arange(g) - (g - 1) / 2) * step
        positions = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
        positions = positions + rng.uniform(-c.jitter_px, c.jitter_px, size=positions.shape) * (g > 1)
        extent = int(math.ceil(np.abs(positions).max())) if g > 1 else 0
        region = size + 2 * extent + 4
        obj = make_object(choice["kind"], (region, region), rng, phase_range=choice["phase_range"],
                          amplitude_min=choice["amplitude_min"])  # fmt: skip
        centre = region / 2
        absolute = torch.from_numpy(positions + centre)
        patches = extract_patches(torch.from_numpy(obj)[None], absolute[None], size)[0]  # (C, N, N)
        scale = choice["photons"] / self.power
        expected = diffraction_intensity(patches[None], self.probe)[0].double() * scale
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        counts = torch.poisson(expected, generator=generator).float()
        mean_total = float(counts.sum(dim=(-2, -1)).mean())
        x_scale = math.sqrt((size / 2) ** 2 / max(mean_total, 1.0))
        offsets = positions - positions.mean(axis=0)
        item = {
            "x": torch.sqrt(counts) * x_scale,
            "counts": counts,
            "offsets": torch.from_numpy(offsets.astype(np.float32)),
            "indices": torch.full((g * g,), -1, dtype=torch.int64),
            "intensity_scale": torch.tensor(scale, dtype=torch.float32),
        }
        if self.with_truth:
            item["truth"] = patches.to(torch.complex64)
        return item


class CorpusSampler(Sampler[int]):
    """Walks through fresh corpus items: epoch ``e`` reads items ``base + e*S .. base + (e+1)*S - 1``.

    Lightning calls :meth:`set_epoch` before every epoch, and every pass moves on by itself as
    well, so each epoch sees new items.
    ``base`` separates corpora that share a seed (training from validation).
    """

    def __init__(self, samples_per_epoch: int, base: int = 0):
        self.samples_per_epoch = int(samples_per_epoch)
        self.base = int(base)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __iter__(self):
        start = self.base + self.epoch * self.samples_per_epoch
        # move on by itself too, for wrappers (distributed training) that do not pass set_epoch on
        self.epoch += 1
        return iter(range(start, start + self.samples_per_epoch))
