"""Networks: generators, the physics-informed model, and its Lightning module."""

from .generators import GENERATORS, build_generator
from .lightning_module import PINNModule, supervised_l1
from .pinn import ForwardModel, PtychoPINN

__all__ = [
    "GENERATORS",
    "ForwardModel",
    "PINNModule",
    "PtychoPINN",
    "build_generator",
    "supervised_l1",
]
