"""Plain gradient solvers through autograd: full-batch L-BFGS and minibatch Adam."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..options import RefinementConfig
from ..problem import RefinementProblem
from .base import Solver, register_solver


def _parameter_groups(problem: RefinementProblem, config: RefinementConfig) -> list[dict]:
    groups = [{"params": problem.object_parameters(), "lr": config.learning_rate, "name": "object"}]
    if config.refine_probe:
        probe_lr = (config.probe_learning_rate or 0.01) * float(problem.probe().detach().abs().max())
        groups.append({"params": [problem.probe_real], "lr": probe_lr, "name": "probe"})
    if config.correct_positions:
        groups.append({"params": [problem.shifts], "lr": config.position_learning_rate, "name": "positions"})
    if config.refine_background:
        groups.append({"params": [problem.background], "lr": 0.01, "name": "background"})  # in mean counts
    return groups


@register_solver("adam")
class AdamSolver(Solver):
    """Minibatch Adam on the mean loss; the probe constraints after every probe step."""

    defaults = {"learning_rate": 0.02, "batch_size": 16, "loss": "poisson", "probe_start_epoch": 5}

    def __init__(self, problem: RefinementProblem, config: RefinementConfig, generator: torch.Generator):
        super().__init__(problem, config, generator)
        self.optimizer = torch.optim.Adam(_parameter_groups(problem, config))
        self.scheduler = None
        if config.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
        elif config.scheduler == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                self.optimizer, step_size=max(1, config.epochs // 3), gamma=0.3
            )

    def run_epoch(self, epoch: int, over_budget: Callable[[], bool]) -> tuple[float, bool]:
        problem = self.problem
        total, seen, stopped = 0.0, 0, False
        for index in self.batches():
            self.optimizer.zero_grad(set_to_none=True)
            loss = problem.batch_loss(index)
            loss.backward()
            self.optimizer.step()
            if problem.probe_real.requires_grad:
                problem.constrain_probe()
            total += float(loss.detach()) * len(index)
            seen += len(index)
            if over_budget():
                stopped = True
                break
        if self.scheduler is not None:
            self.scheduler.step()
        return total / max(seen, 1), stopped


@register_solver("lbfgs")
class LBFGSSolver(Solver):
    """Full-batch L-BFGS with a strong-Wolfe line search.

    Each epoch runs ``lbfgs_iterations`` iterations. The budget is checked before every
    function evaluation; when it is spent mid-epoch, the best point evaluated so far is kept.
    """

    defaults = {"learning_rate": 0.5, "batch_size": 64, "loss": "poisson", "probe_start_epoch": 5}

    def __init__(self, problem: RefinementProblem, config: RefinementConfig, generator: torch.Generator):
        super().__init__(problem, config, generator)
        self.optimizer = torch.optim.LBFGS(
            [p for g in _parameter_groups(problem, config) for p in g["params"]],
            lr=config.learning_rate, max_iter=config.lbfgs_iterations, line_search_fn="strong_wolfe",
        )  # fmt: skip

    def run_epoch(self, epoch: int, over_budget: Callable[[], bool]) -> tuple[float, bool]:
        problem, config = self.problem, self.config
        everything = torch.arange(problem.n, device=problem.counts.device)
        best: dict = {"loss": float("inf"), "state": None}

        def closure() -> torch.Tensor:
            # full-batch loss and gradient, accumulated chunk by chunk to bound memory
            if over_budget():
                raise _OutOfTime
            self.optimizer.zero_grad(set_to_none=True)
            value = torch.zeros((), device=problem.counts.device)
            for index in everything.split(config.batch_size):
                part = problem.batch_loss(index) * (len(index) / problem.n)
                part.backward()
                value += part.detach()
            if float(value) < best["loss"]:  # the best point so far, kept should time run out
                best["loss"] = float(value)
                best["state"] = [p.detach().clone() for p in problem.parameters()]
            return value

        try:
            loss = float(self.optimizer.step(closure))
        except _OutOfTime:
            if best["state"] is not None:
                with torch.no_grad():
                    for parameter, saved in zip(problem.parameters(), best["state"], strict=True):
                        parameter.copy_(saved)
            return best["loss"], True
        return loss, over_budget()


class _OutOfTime(Exception):
    """Raised inside the L-BFGS closure when the time budget is spent."""
