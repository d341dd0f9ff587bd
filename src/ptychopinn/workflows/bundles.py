"""Saving a trained network as a model bundle and rebuilding it from one."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from .. import __version__
from ..common import photons_option
from ..config import RunConfig
from ..io import BundleError, FileReport, read_bundle, write_bundle
from ..io import inspect_file as inspect_io
from ..models import PINNModule, build_module
from ..options import Options, option


@dataclass(frozen=True)
class LoadedModel:
    """A network rebuilt from a bundle, with the facts its manifest records."""

    module: PINNModule
    manifest: dict[str, Any]
    config: RunConfig

    @property
    def gridsize(self) -> int:
        return int(self.manifest["gridsize"])

    @property
    def pattern_size(self) -> int:
        return int(self.manifest["pattern_size"])


def save_model_bundle(module: PINNModule, path: str | os.PathLike, config: RunConfig, **facts: Any) -> None:
    """Write ``module`` and its configuration as a bundle (see :mod:`ptychopinn.io.bundle`).

    Extra keyword facts (e.g. ``photon_scale``, ``training_scan``) go into the manifest.
    """
    hp = module.hparams
    manifest = {
        "package": "ptychopinn",
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "generator": config.model.generator,
        "pattern_size": int(hp.size),
        "gridsize": config.data.gridsize,
        "channels": int(hp.channels),
        "probe_modes": int(hp.probe_modes),
        "input_scale": float(module.input_scale),
        "input_normalisation": str(hp.get("input_normalisation", "frozen")),
        "has_mask": bool(module.mask is not None),
        "probe_key": "net.forward_model.probe_real",
        **facts,
    }
    write_bundle(path, manifest, dict(module.state_dict()))


def load_model_bundle(path: str | os.PathLike) -> LoadedModel:
    """Verify a bundle and rebuild its network on the CPU, in evaluation mode.

    Raises
    ------
    BundleError
        The bundle is untrustworthy or does not describe a network this package can build.
    """
    manifest, tensors = read_bundle(path)
    source = os.fspath(path)
    try:
        config = RunConfig.from_dict(manifest["config"], source=f"{source}: manifest config")
        for key in ("channels", "pattern_size", "probe_modes", "gridsize"):
            value = manifest[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"manifest {key} = {value!r} is not a positive integer")
        if not isinstance(manifest["has_mask"], bool):
            raise ValueError(f"manifest has_mask = {manifest['has_mask']!r} is not true or false")
        scale = manifest["input_scale"]
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise ValueError(f"input_scale {scale!r} is not a number")
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"input_scale {scale!r} must be a finite positive number")

        def build() -> PINNModule:
            return build_module(
                config,
                channels=int(manifest["channels"]),
                size=int(manifest["pattern_size"]),
                probe_modes=int(manifest["probe_modes"]),
                input_scale=scale,
                input_normalisation=str(manifest.get("input_normalisation", "frozen")),
                has_mask=bool(manifest["has_mask"]),
            )

        # the architecture is compared with the stored tensors on the meta device (no memory):
        # a manifest claiming pattern_size 30000 must not build a 7 GB network first
        with torch.device("meta"):
            expected = {name: tuple(t.shape) for name, t in build().state_dict().items()}
        stored = {name: tuple(t.shape) for name, t in tensors.items()}
        if expected != stored:
            differ = sorted(
                f"{name} {stored.get(name, 'missing')} vs {expected.get(name, 'unexpected')}"
                for name in set(expected) | set(stored)
                if expected.get(name) != stored.get(name)
            )
            raise ValueError("the weights do not fit the manifest's network: " + "; ".join(differ[:3]))
        module = build()
        module.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise BundleError(
            f"manifest and weights do not describe a buildable network ({exc})", source=source
        ) from None
    module.eval()
    return LoadedModel(module=module, manifest=manifest, config=config)


def resolve_device(accelerator: str, devices: Any = "auto") -> torch.device:
    """The torch device for single-process inference from Lightning-style options.

    ``auto`` picks CUDA when present, then MPS, else the CPU. Inference runs in one process on
    one device: ``devices`` as a list of indices picks the first; a count uses device 0.
    """
    index = devices[0] if isinstance(devices, (tuple, list)) and devices else 0
    if accelerator == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", index)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"accelerator '{accelerator}' requested but no CUDA GPU is available")
        return torch.device("cuda", index)
    if accelerator == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise ValueError("accelerator 'mps' requested but MPS is not available")
        return torch.device("mps")
    if accelerator == "cpu":
        return torch.device("cpu")
    raise ValueError(f"accelerator '{accelerator}' is not supported for inference (use auto, cpu, gpu, mps)")


@dataclass(frozen=True)
class InspectOptions(Options):
    """Options of ``inspect``: how a file's values are read."""

    section = "inspect"
    photons_per_pattern: float | None = photons_option()


def inspect_file(path: str | os.PathLike, options: InspectOptions | None = None) -> FileReport:
    """:func:`ptychopinn.io.inspect_file`, where a bundle must also rebuild its network."""
    options = options if options is not None else InspectOptions()
    return inspect_io(path, photons_per_pattern=options.photons_per_pattern, bundle_check=load_model_bundle)


@dataclass(frozen=True)
class InspectInputs(Options):
    """Read scan files, check every value, report contents and problems. Exits 2 when any
    file has a problem."""

    section = "inspect"
    files: tuple[str, ...] = option(
        (), "NPZ or CXI/HDF5 scan file(s), ptychodus directories, model bundles", positional=True,
        metavar="FILE",
    )  # fmt: skip
