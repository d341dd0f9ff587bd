"""The solver contract; solvers register in :data:`ptychopinn.registry.SOLVERS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ...options import NoOptions, Options
from ...registry import SOLVERS
from ..options import RefinementConfig
from ..problem import RefinementProblem


def register_solver(name: str) -> Callable[[type[Solver]], type[Solver]]:
    """Class decorator: make a solver available as ``RefinementConfig(optimizer=name)``.

    Raises
    ------
    ValueError
        Another solver has the name, or it is not a lower-case identifier.
    TypeError
        The class is not a :class:`Solver`.
    """

    def register(cls: type[Solver]) -> type[Solver]:
        if not isinstance(cls, type) or not issubclass(cls, Solver):
            raise TypeError(f"solver '{name}': {cls!r} is not a subclass of Solver")
        return SOLVERS.register(name, cls)

    return register


class Solver:
    """One optimisation method over a :class:`RefinementProblem`.

    Subclasses set :attr:`defaults` (values for the options left ``None`` in
    :class:`RefinementConfig`: ``learning_rate``, ``batch_size``, ``loss``,
    ``probe_start_epoch``; a ``batch_size`` of None is decided from the data by
    :meth:`batch_size_for`), optionally :attr:`options` (an :class:`~ptychopinn.options.Options`
    subclass holding the solver's own options, with their defaults; the user sets them in
    ``RefinementConfig.solver_options``, ``--solver.NAME`` on the command line; the solver
    reads them as :attr:`settings`), and implement :meth:`run_epoch`.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    options: ClassVar[type[Options]] = NoOptions

    @classmethod
    def batch_size_for(cls, counts: torch.Tensor) -> int:
        """The minibatch size when the options leave it open (``batch_size`` None)."""
        return int(cls.defaults["batch_size"])

    def __init__(self, problem: RefinementProblem, config: RefinementConfig, generator: torch.Generator):
        self.problem = problem
        self.config = config
        self.generator = generator
        self.settings = config.solver_settings()

    def run_epoch(self, epoch: int, over_budget: Callable[[], bool]) -> tuple[float, bool]:
        """One pass over the positions.

        Parameters
        ----------
        epoch : int
            Zero-based epoch number.
        over_budget : callable
            Returns True once the time budget is spent; the solver stops the epoch there.

        Returns
        -------
        (float, bool)
            The epoch's mean loss per valid pixel, and whether it stopped on the budget.
        """
        raise NotImplementedError

    def batches(self) -> list[torch.Tensor]:
        """A seeded random split of the positions into minibatches."""
        order = torch.randperm(self.problem.n, generator=self.generator).to(self.problem.counts.device)
        return list(order.split(self.config.batch_size))
