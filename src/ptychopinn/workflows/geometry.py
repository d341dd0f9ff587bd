"""The geometry a forward model needs, read off a scan (docs/conventions.md, "Forward model")."""

from __future__ import annotations

from ..config import RunConfig
from ..io import Scan
from ..options import Options
from ..physics.forward_models import FORWARD_MODELS, ForwardModel, Geometry, build_forward_model
from ..refine import RefinementConfig


def scan_geometry(scan: Scan, refinement: RefinementConfig) -> Geometry:
    """The wavelength and object pixel of a scan, for the forward model the refinement uses."""
    return geometry_for(scan, refinement.forward_model, refinement.forward_settings())


def geometry_for(scan: Scan, forward_model: str, settings: Options) -> Geometry:
    """The wavelength and object pixel of a scan, for ``forward_model`` with ``settings``.

    The object pixel is the scan's stored one, else the one the forward model gives its
    detector (the far field: ``lambda z / (N p)``; the near field: the detector pixel over the
    magnification); None where the scan does not say enough.
    """
    meta = scan.metadata
    pixel = meta.object_pixel_size_m
    known = None not in (meta.wavelength_m, meta.detector_distance_m, meta.detector_pixel_size_m)
    if pixel is None and known:
        model = FORWARD_MODELS.get(forward_model)
        pixel = model.object_pixel_size_m(
            settings, meta.wavelength_m, meta.detector_distance_m, scan.pattern_size,
            meta.detector_pixel_size_m,
        )  # fmt: skip
    return Geometry(wavelength_m=meta.wavelength_m, pixel_size_m=pixel)


def scan_forward_model(scan: Scan, refinement: RefinementConfig) -> ForwardModel:
    """The refinement's forward model with its options, built for the scan's geometry."""
    geometry = scan_geometry(scan, refinement)
    return build_forward_model(refinement.forward_model, refinement.forward_settings(), geometry)


def with_scan_geometry(config: RunConfig, scan: Scan) -> RunConfig:
    """``config`` with the network's forward-model geometry filled from the training scan.

    The far field needs none. Another model gets the scan's wavelength and object pixel where
    the configuration leaves them open, so that the bundle carries them.

    Raises
    ------
    ValueError
        The model needs a value that neither the configuration nor the scan gives.
    """
    model = config.model
    if model.forward_model == "far_field":
        return config
    settings = model.plugin_options("forward_model_options", model.forward_model)
    geometry = geometry_for(scan, model.forward_model, settings)
    filled = {
        "wavelength_m": model.wavelength_m if model.wavelength_m is not None else geometry.wavelength_m,
        "object_pixel_m": model.object_pixel_m if model.object_pixel_m is not None else geometry.pixel_size_m,
    }
    for name, value in filled.items():
        if value is None:
            raise ValueError(
                f"model.forward_model = {model.forward_model}: model.{name} is not given and the scan "
                f"{scan.source or ''} does not give it"
            )
    return config.updated({"model": filled}, source="the training scan's geometry")
