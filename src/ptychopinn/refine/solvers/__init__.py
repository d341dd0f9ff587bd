"""Solvers of the refinement problem, one per file, each owning its defaults.

A solver is a class registered with :func:`register_solver`; it gets the
:class:`~ptychopinn.refine.problem.RefinementProblem` and runs one epoch at a time
(:meth:`Solver.run_epoch`), checking the time budget as often as it can. Adding a solver is
adding a file here and importing it below.
"""

from .base import SOLVERS, Solver, register_solver
from .gradient import AdamSolver, LBFGSSolver
from .preconditioned import PreconditionedSolver

__all__ = ["SOLVERS", "AdamSolver", "LBFGSSolver", "PreconditionedSolver", "Solver", "register_solver"]
