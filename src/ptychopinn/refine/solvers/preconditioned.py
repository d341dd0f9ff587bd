"""Preconditioned minibatch updates of the PIE / LSQML class.

For a minibatch B of positions, with the Gaussian amplitude noise model
``L = sum_k 0.5 |sqrt(lambda_k) - sqrt(I_k)|^2`` (autograd gives the gradients through the
sub-pixel extraction and the far field, so masked pixels, probe modes and the background
enter exactly as in the forward model):

    O <- O - a * dL/dO* / (sum_{k in B} T(r_k)[sum_m |P_m|^2] + alpha max(.))
    P <- P - b * dL/dP* / (sum_{k in B} |O_k|^2 + beta max(.))

The object gradient is a sum over the batch of ``conj(P) (psi - psi')`` scattered onto the
object, so with ``a = 1`` each pixel moves by the illumination-weighted mean of the
single-pattern PIE corrections (Maiden & Rodenburg's ePIE, Odstrcil's LSQML use the same
normalisations), and a momentum between epochs (mPIE) speeds up the tail. With the Poisson
noise model instead, a quarter of the NLL gradient is used: near the fit it is the same
step, and it moves each amplitude half-way to ``I / |Psi|`` (a Heron step to ``sqrt(I)``).
After every probe step the modes are re-orthogonalised and their power held
to the calibrated value. Positions follow their own gradient with Adam; the background per
detector pixel moves by the batch's mean excess of predicted over measured counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...options import Options, option
from ...physics import scatter_patches
from ..options import RefinementConfig
from ..problem import RefinementProblem, gaussian_amplitude_loss
from .base import Solver, register_solver

#: Regularisation of the preconditioners, relative to their maxima: keeps steps bounded
#: where the illumination (or the object intensity) is weak.
OBJECT_REGULARISATION = 0.05
PROBE_REGULARISATION = 0.05
#: Floor (counts) added to lambda in the Poisson logarithm: bounds the step on dark pixels.
POISSON_FLOOR = 1e-2
#: Photons per minibatch update below which a batch grows (see ``batch_size_for``).
COUNTS_PER_UPDATE = 1.4e7
#: Fraction of the batch's mean excess counts the background moves by per step.
BACKGROUND_STEP = 0.5


@dataclass(frozen=True)
class PreconditionedOptions(Options):
    """The preconditioned solver's own options."""

    section = "preconditioned"
    #: Object momentum between epochs (Maiden et al.'s mPIE uses 0.7): the tail of PIE-class
    #: solvers is slow; with it the example scan reaches phase SSIM 0.98 in 25 s instead of 0.93.
    momentum: float = option(
        0.7, "object momentum between epochs (mPIE; 0: none)", flags=("--momentum",), minimum=0.0,
        maximum=1.0, exclusive_maximum=True,
    )  # fmt: skip


@register_solver("preconditioned")
class PreconditionedSolver(Solver):
    """Per-minibatch preconditioned updates; see the module docstring."""

    defaults = {"learning_rate": 1.0, "batch_size": None, "loss": "gaussian", "probe_start_epoch": 1}
    options = PreconditionedOptions

    @classmethod
    def batch_size_for(cls, counts: torch.Tensor) -> int:
        """Enough patterns per update to hold :data:`COUNTS_PER_UPDATE` photons, at least 32.

        Every minibatch update moves the object by its own photon noise; with a fixed step
        the noise of small batches accumulates (at 1e4 photons per pattern, batches of 32 and
        128 fit it: phase SSIM falls after a few seconds). Bright scans keep 32, the fastest
        to converge; dim ones grow to the whole scan.
        """
        n = counts.shape[0]
        per_pattern = float(counts.sum(dim=(-2, -1)).double().mean())
        wanted = math.ceil(COUNTS_PER_UPDATE / max(per_pattern, 1.0))
        return max(1, min(n, max(32, wanted)))

    def __init__(self, problem: RefinementProblem, config: RefinementConfig, generator: torch.Generator):
        super().__init__(problem, config, generator)
        self.probe_step = config.probe_learning_rate if config.probe_learning_rate is not None else 1.0
        self.position_optimizer = (
            torch.optim.Adam([problem.shifts], lr=config.position_learning_rate)
            if config.correct_positions
            else None
        )
        self.velocity: torch.Tensor | None = None

    def run_epoch(self, epoch: int, over_budget: Callable[[], bool]) -> tuple[float, bool]:
        problem, config = self.problem, self.config
        total, seen, stopped = 0.0, 0, False
        with torch.no_grad():
            before = problem.object_real.detach().clone()
        for index in self.batches():
            for parameter in problem.parameters():
                parameter.grad = None
            patches, predicted = problem.forward_batch(index)
            if config.loss == "poisson":
                # Poisson NLL (a sum): 1/4 of its gradient moves |Psi| half-way to I/|Psi|, a
                # Heron step towards sqrt(I); the same size as the amplitude step near the fit
                measured = problem.counts[index]
                terms = predicted - measured * torch.log(predicted + POISSON_FLOOR)
                if problem.mask_float is not None:
                    terms = terms * problem.mask_float
                loss = terms.sum()
                (0.25 * loss).backward()
            else:
                loss = gaussian_amplitude_loss(predicted, problem.amplitudes[index], problem.mask_float)
                loss.backward()
            self._update(index, patches.detach(), predicted.detach())
            total += float(loss.detach())
            seen += len(index)
            if over_budget():
                stopped = True
                break
        if not stopped:
            with torch.no_grad():  # momentum: carry on along the last epochs' net motion
                delta = problem.object_real - before
                momentum = self.settings.momentum
                self.velocity = delta if self.velocity is None else momentum * self.velocity + delta
                problem.object_real += momentum * self.velocity
        return total / (max(seen, 1) * problem.valid_pixels()), stopped

    @torch.no_grad()
    def _update(self, index: torch.Tensor, patches: torch.Tensor, predicted: torch.Tensor) -> None:
        problem, config = self.problem, self.config
        probe = problem.probe()
        where = problem.corrected_positions(index)
        shape = tuple(problem.object().shape)

        intensity = (probe.real**2 + probe.imag**2).sum(dim=0)
        stack = intensity.expand(len(index), *intensity.shape).contiguous()
        illumination = scatter_patches(stack[None], where[None], shape)[0]
        denominator = illumination + OBJECT_REGULARISATION * illumination.max()
        grad = torch.view_as_complex(problem.object_real.grad)
        problem.object_real -= config.learning_rate * torch.view_as_real(grad / denominator)

        if problem.probe_real.grad is not None:
            object_intensity = (patches.real**2 + patches.imag**2).sum(dim=0)
            denominator = object_intensity + PROBE_REGULARISATION * object_intensity.max()
            grad = torch.view_as_complex(problem.probe_real.grad)
            problem.probe_real -= self.probe_step * torch.view_as_real(grad / denominator)
            problem.constrain_probe()

        if self.position_optimizer is not None and problem.shifts.grad is not None:
            self.position_optimizer.step()

        if problem.background.requires_grad:
            excess = (predicted - problem.counts[index]).mean(dim=0)
            step = BACKGROUND_STEP * excess / problem.background_unit
            problem.background.copy_((problem.background - step).clamp_min(0))
