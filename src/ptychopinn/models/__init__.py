"""Networks: generators, the physics-informed model, and its Lightning module."""

from .generators import (
    GENERATORS,
    Generator,
    build_generator,
    get_generator,
    list_generators,
    register_generator,
)
from .lightning_module import PINNModule, build_module, supervised_l1
from .pinn import ForwardModel, PtychoPINN

__all__ = [
    "GENERATORS",
    "ForwardModel",
    "Generator",
    "PINNModule",
    "PtychoPINN",
    "build_generator",
    "build_module",
    "get_generator",
    "list_generators",
    "register_generator",
    "supervised_l1",
]
