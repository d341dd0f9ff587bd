"""The refinement loop: epochs, the time budget, progress callbacks, convergence."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .options import RefinementConfig
from .problem import RefinementProblem
from .solvers import Solver


@dataclass(frozen=True)
class RefinementProgress:
    """Reported to the progress callback after every epoch.

    ``snapshot()`` returns a copy of the current object (complex64 numpy), on demand only.
    """

    epoch: int
    loss: float
    elapsed_s: float
    snapshot: Callable[[], np.ndarray] = field(repr=False, default=lambda: np.empty((0, 0), np.complex64))


def run_epochs(
    problem: RefinementProblem,
    solver: Solver,
    config: RefinementConfig,
    started: float,
    callback: Callable[[RefinementProgress], None] | None = None,
) -> tuple[list[float], str]:
    """Run the solver epoch by epoch until the epochs, the budget or convergence end it.

    Parameters
    ----------
    started : float
        ``time.perf_counter()`` at the start of the whole refinement (the budget counts
        from there, set-up included).

    Returns
    -------
    (list of float, str)
        The loss of every epoch, and why it stopped: ``epochs``, ``time budget`` or
        ``converged``.
    """
    budget = config.time_budget_s

    def over_budget() -> bool:
        return budget is not None and time.perf_counter() - started > budget

    history: list[float] = []
    stalled = 0
    for epoch in range(config.epochs):
        problem.set_epoch(epoch)
        loss, stopped = solver.run_epoch(epoch, over_budget)
        history.append(loss)
        if callback is not None:
            callback(RefinementProgress(
                epoch=epoch, loss=loss, elapsed_s=time.perf_counter() - started, snapshot=problem.snapshot,
            ))  # fmt: skip
        if stopped or over_budget():
            return history, "time budget"
        if config.convergence_tolerance is not None and len(history) > 1:
            change = abs(history[-1] - history[-2]) / max(abs(history[-2]), 1e-30)
            stalled = stalled + 1 if change < config.convergence_tolerance else 0
            if stalled >= config.patience:
                return history, "converged"
    return history, "epochs"
