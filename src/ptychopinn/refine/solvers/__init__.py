"""Solvers of the refinement problem, one per file, each owning its defaults.

A solver is a class registered with :func:`register_solver`; it gets the
:class:`~ptychopinn.refine.problem.RefinementProblem` and runs one epoch at a time
(:meth:`Solver.run_epoch`), checking the time budget as often as it can. Adding a solver is
adding a file here: every module of this folder is imported (:data:`SOLVERS` discovers them).
"""

from ...registry import SOLVERS
from .base import Solver, register_solver

SOLVERS.discover()

from .gradient import AdamSolver, LBFGSSolver  # noqa: E402 - imported by the discovery above
from .preconditioned import PreconditionedSolver  # noqa: E402

__all__ = ["SOLVERS", "AdamSolver", "LBFGSSolver", "PreconditionedSolver", "Solver", "register_solver"]
