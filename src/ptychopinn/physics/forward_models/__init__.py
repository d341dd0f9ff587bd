"""Forward models: how an exit wave reaches the detector, one file each (docs/conventions.md,
"Forward model").

Every module of this folder registers its model in :data:`ptychopinn.registry.FORWARD_MODELS`
with :func:`~ptychopinn.physics.forward_models.base.register_forward_model`; a new model is one
new file (see :mod:`~ptychopinn.physics.forward_models.base` for the contract). Chosen by name
(``RefinementConfig.forward_model``, ``--forward-model``) and built for a geometry by
:func:`build_forward_model`.
"""

from __future__ import annotations

from ...registry import FORWARD_MODELS
from .base import ForwardModel, Geometry, build_forward_model, register_forward_model

FORWARD_MODELS.discover()  # every module of this folder: each registers its model

from .far_field import FarField  # noqa: E402 - imported by the discovery above
from .near_field import NearField  # noqa: E402

__all__ = ["FORWARD_MODELS", "FarField", "ForwardModel", "Geometry", "NearField", "build_forward_model",
           "register_forward_model"]  # fmt: skip
