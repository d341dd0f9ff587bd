"""The geometry a forward model needs, read off a scan (docs/conventions.md, "Forward model")."""

from __future__ import annotations

from ..io import Scan
from ..physics.forward_models import FORWARD_MODELS, ForwardModel, Geometry, build_forward_model
from ..refine import RefinementConfig


def scan_geometry(scan: Scan, refinement: RefinementConfig) -> Geometry:
    """The wavelength and object pixel of a scan, for the forward model the refinement uses.

    The object pixel is the scan's stored one, else the one the forward model gives its
    detector (the far field: ``lambda z / (N p)``; the near field: the detector pixel over the
    magnification); None where the scan does not say enough.
    """
    meta = scan.metadata
    pixel = meta.object_pixel_size_m
    known = None not in (meta.wavelength_m, meta.detector_distance_m, meta.detector_pixel_size_m)
    if pixel is None and known:
        model = FORWARD_MODELS.get(refinement.forward_model)
        pixel = model.object_pixel_size_m(
            refinement.forward_settings(), meta.wavelength_m, meta.detector_distance_m, scan.pattern_size,
            meta.detector_pixel_size_m,
        )  # fmt: skip
    return Geometry(wavelength_m=meta.wavelength_m, pixel_size_m=pixel)


def scan_forward_model(scan: Scan, refinement: RefinementConfig) -> ForwardModel:
    """The refinement's forward model with its options, built for the scan's geometry."""
    geometry = scan_geometry(scan, refinement)
    return build_forward_model(refinement.forward_model, refinement.forward_settings(), geometry)
