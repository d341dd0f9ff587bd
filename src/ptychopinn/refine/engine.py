"""Physics refinement: gradient descent on the object (and optionally the probe and the
positions) through the forward model and the Poisson likelihood.

    minimise_O,P,dr  sum_k  L( sum_m |F(P_m * Extract(O, r_k + dr_k))|^2 ,  I_k )  [+ tv * TV(O)]

The same operators as training and inference (bilinear sub-pixel extraction, orthonormal
far field, Poisson NLL): a network's stitched prediction is polished in the very model it
was trained with. Minibatches of positions with Adam, or full-batch L-BFGS.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..physics import (
    amplitude_mae,
    as_probe_modes,
    canvas_shape,
    diffraction_intensity,
    extract_patches,
    poisson_deviance,
    probe_weight,
    scatter_patches,
)

OPTIMIZERS = ("adam", "lbfgs")
PARAMETERIZATIONS = ("complex", "amplitude_phase")
REFINE_LOSSES = ("poisson", "amplitude_mae")
REFINE_SCHEDULERS = ("none", "cosine", "step")


@dataclass(frozen=True)
class RefinementConfig:
    """Options of :func:`refine_object`; each destabilising option is off by default.

    Attributes
    ----------
    epochs : int
        Maximum passes over all positions.
    time_budget_s : float or None
        Stop after this many seconds (checked after every optimiser step).
    batch_size : int
        Positions per Adam step. L-BFGS always uses all positions per step and evaluates
        them in chunks of this size (memory only).
    optimizer : {"lbfgs", "adam"}
        Full-batch L-BFGS with a strong-Wolfe line search (the default: fastest to high
        quality on the benchmark scan, see docs/benchmarks.md), or minibatch Adam (try
        ``learning_rate`` 0.02, ``batch_size`` 16).
    learning_rate : float
        L-BFGS initial step (the line search adapts it) or Adam step size.
    scheduler : {"none", "cosine", "step"}
        Per-epoch learning-rate schedule (Adam); cosine runs over ``epochs``.
    loss : {"poisson", "amplitude_mae"}
        ``poisson`` minimises the Poisson NLL, computed as the deviance
        (:func:`~ptychopinn.physics.poisson_deviance`: zero at a perfect fit).
    parameterization : {"complex", "amplitude_phase"}
        Optimise real/imaginary parts, or amplitude and phase.
    refine_probe : bool
        Also optimise the probe (all its incoherent modes).
    probe_modes : int or None
        Grow the probe to this many incoherent modes before refining (needs refine_probe).
    probe_learning_rate : float or None
        Relative step for the probe (scaled by the probe's peak amplitude); default 0.01.
    probe_start_epoch : int
        First epoch of probe refinement (let the object settle first).
    correct_positions : bool
        Optimise a shift per position, bounded by ``max_position_shift_px``; the mean shift
        is held at zero (a common shift is the object's, not the positions').
    position_learning_rate : float
        Adam step of the shifts, in pixels.
    max_position_shift_px : float
    positions_start_epoch : int
    tv_weight : float
        Weight of a total-variation prior on the object (low dose); 0 disables it.
    convergence_tolerance : float or None
        Stop when the epoch loss changed by less than this (relative) for ``patience`` epochs.
    patience : int
    lbfgs_iterations : int
        Inner iterations per L-BFGS epoch (the time budget is checked between epochs).
    seed : int
        Fixes the minibatch order (and new probe modes).
    """

    epochs: int = 1000
    time_budget_s: float | None = None
    batch_size: int = 64
    optimizer: str = "lbfgs"
    learning_rate: float = 0.5
    scheduler: str = "none"
    loss: str = "poisson"
    parameterization: str = "complex"
    refine_probe: bool = False
    probe_modes: int | None = None
    probe_learning_rate: float | None = None
    probe_start_epoch: int = 5
    correct_positions: bool = False
    position_learning_rate: float = 0.02
    max_position_shift_px: float = 3.0
    positions_start_epoch: int = 10
    tv_weight: float = 0.0
    convergence_tolerance: float | None = None
    patience: int = 5
    lbfgs_iterations: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"refinement.{name} = {getattr(self, name)!r}: {rule}")

        for name in ("epochs", "batch_size", "patience", "lbfgs_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be an integer >= 1")
        for name in ("probe_start_epoch", "positions_start_epoch", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(name, "must be an integer >= 0")
        for name in ("learning_rate", "position_learning_rate", "max_position_shift_px"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                fail(name, "must be a finite number > 0")
        for name in ("time_budget_s", "probe_learning_rate", "convergence_tolerance"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            ):
                fail(name, "must be a finite number > 0, or None")
        if not (
            isinstance(self.tv_weight, (int, float)) and math.isfinite(self.tv_weight) and self.tv_weight >= 0
        ):
            fail("tv_weight", "must be a finite number >= 0")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in REFINE_SCHEDULERS:
            fail("scheduler", f"must be one of {', '.join(REFINE_SCHEDULERS)}")
        if self.loss not in REFINE_LOSSES:
            fail("loss", f"must be one of {', '.join(REFINE_LOSSES)}")
        if self.parameterization not in PARAMETERIZATIONS:
            fail("parameterization", f"must be one of {', '.join(PARAMETERIZATIONS)}")
        if self.probe_modes is not None:
            if (
                isinstance(self.probe_modes, bool)
                or not isinstance(self.probe_modes, int)
                or self.probe_modes < 1
            ):
                fail("probe_modes", "must be an integer >= 1, or None")
            if not self.refine_probe:
                fail("probe_modes", "adding probe modes needs refine_probe = True")
        for name in ("refine_probe", "correct_positions"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "must be true or false")


@dataclass(frozen=True)
class RefinementProgress:
    """Reported to the progress callback after every epoch.

    ``snapshot()`` returns a copy of the current object (complex64 numpy), on demand only.
    """

    epoch: int
    loss: float
    elapsed_s: float
    snapshot: Callable[[], np.ndarray] = field(repr=False, default=lambda: np.empty((0, 0), np.complex64))


@dataclass
class RefinementResult:
    """The refined object, probe and positions, with the loss history.

    Attributes
    ----------
    object : numpy.ndarray
        complex64 ``(H, W)``.
    probe : numpy.ndarray
        complex64 ``(M, N, N)``.
    positions : numpy.ndarray
        ``(n, 2)`` float64 ``(y, x)``: the corrected positions (the input ones when not corrected).
    coverage : numpy.ndarray
        bool ``(H, W)``: pixels the probe illuminated (weight sum above 1e-3 of a peak).
    illumination : numpy.ndarray
        float32 ``(H, W)`` sum of normalised probe intensities over the positions.
    loss_history : list of float
        Mean loss per epoch.
    epochs : int
    elapsed_s : float
    stop_reason : str
        ``epochs``, ``time budget`` or ``converged``.
    """

    object: np.ndarray
    probe: np.ndarray
    positions: np.ndarray
    coverage: np.ndarray
    illumination: np.ndarray
    loss_history: list[float] = field(default_factory=list)
    epochs: int = 0
    elapsed_s: float = 0.0
    stop_reason: str = "epochs"


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean isotropic total variation of a complex image (smoothed at zero)."""
    dy = image[1:, :-1] - image[:-1, :-1]
    dx = image[:-1, 1:] - image[:-1, :-1]
    return torch.sqrt(dy.abs() ** 2 + dx.abs() ** 2 + 1e-12).mean()


def constant_object(shape: tuple[int, int], counts: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """A flat object whose predicted mean counts match the data: ``a = sqrt(<sum I> / sum |P|^2)``."""
    power = float((probe.abs() ** 2).sum())
    mean_counts = float(counts.sum(dim=(-2, -1)).double().mean())
    value = math.sqrt(mean_counts / power) if power > 0 and mean_counts > 0 else 1.0
    return torch.full(shape, value, dtype=torch.complex64)


def _add_modes(probe: torch.Tensor, total: int, generator: torch.Generator) -> torch.Tensor:
    """Grow a probe stack to ``total`` modes: new modes are weak, randomly phased copies."""
    if total <= probe.shape[0]:
        return probe
    main = probe[0]
    extra = []
    for _ in range(total - probe.shape[0]):
        phase = torch.rand(main.shape, generator=generator) * 2 * math.pi
        extra.append(0.1 * main * torch.exp(1j * phase).to(main.dtype))
    return torch.cat([probe, torch.stack(extra)], dim=0)


class _Parameters(torch.nn.Module):
    """The optimised quantities and how they combine into the forward model's inputs."""

    def __init__(self, obj: torch.Tensor, probe: torch.Tensor, n_positions: int, config: RefinementConfig):
        super().__init__()
        self.parameterization = config.parameterization
        if config.parameterization == "complex":
            self.object_real = torch.nn.Parameter(torch.view_as_real(obj.clone()).contiguous())
        else:
            self.amplitude = torch.nn.Parameter(obj.abs().float().clone())
            self.phase = torch.nn.Parameter(obj.angle().float().clone())
        self.probe_real = torch.nn.Parameter(
            torch.view_as_real(probe.clone()).contiguous(), requires_grad=config.refine_probe
        )
        self.shifts = torch.nn.Parameter(
            torch.zeros(n_positions, 2, dtype=torch.float64), requires_grad=config.correct_positions
        )
        self.bound = config.max_position_shift_px

    def object(self) -> torch.Tensor:
        if self.parameterization == "complex":
            return torch.view_as_complex(self.object_real)
        return torch.polar(self.amplitude, self.phase)

    def probe(self) -> torch.Tensor:
        return torch.view_as_complex(self.probe_real)

    def position_shifts(self) -> torch.Tensor:
        bounded = self.bound * torch.tanh(self.shifts / self.bound)
        return bounded - bounded.mean(dim=0)


def illumination_map(positions: torch.Tensor, probe: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Sum over positions of the probe intensity normalised to max 1, on the object grid."""
    weight = probe_weight(probe.detach()).to(positions.device)
    stack = weight.expand(positions.shape[0], *weight.shape).contiguous()
    return scatter_patches(stack[None], positions[None], shape)[0]


def refine_object(
    counts: np.ndarray | torch.Tensor,
    positions: np.ndarray | torch.Tensor,
    probe: np.ndarray | torch.Tensor,
    initial_object: np.ndarray | torch.Tensor | None = None,
    *,
    mask: np.ndarray | torch.Tensor | None = None,
    config: RefinementConfig | None = None,
    device: torch.device | str = "cpu",
    callback: Callable[[RefinementProgress], None] | None = None,
) -> RefinementResult:
    """Refine an object (and optionally the probe and positions) against measured counts.

    Parameters
    ----------
    counts : array
        Measured intensities in photon counts, ``(n, N, N)``.
    positions : array
        ``(n, 2)`` ``(y, x)`` object pixels (sub-pixel).
    probe : array
        Complex probe ``(N, N)`` or ``(M, N, N)`` calibrated in counts.
    initial_object : array, optional
        Starting object ``(H, W)`` (e.g. a network's stitched prediction); default a flat
        object on a canvas holding every position (:func:`constant_object`).
    mask : array, optional
        Detector mask ``(N, N)``, True where valid.
    config : RefinementConfig, optional
    device : torch.device or str
    callback : callable, optional
        Called with a :class:`RefinementProgress` after every epoch.

    Returns
    -------
    RefinementResult
    """
    config = config if config is not None else RefinementConfig()
    device = torch.device(device)
    started = time.perf_counter()
    counts_t = torch.as_tensor(
        np.asarray(counts, dtype=np.float32) if not torch.is_tensor(counts) else counts
    )
    counts_t = counts_t.to(device, torch.float32)
    positions_t = torch.as_tensor(positions, dtype=torch.float64).to(device)
    probe_t = as_probe_modes(torch.as_tensor(probe).to(torch.complex64))
    n, size = counts_t.shape[0], counts_t.shape[-1]
    if counts_t.ndim != 3 or counts_t.shape[1:] != (size, size):
        raise ValueError(f"counts must have shape (n, N, N), got {tuple(counts_t.shape)}")
    if positions_t.shape != (n, 2):
        raise ValueError(f"positions must have shape ({n}, 2), got {tuple(positions_t.shape)}")
    if probe_t.shape[-2:] != (size, size):
        raise ValueError(
            f"probe size {tuple(probe_t.shape[-2:])} does not match the patterns ({size}, {size})"
        )
    generator = torch.Generator().manual_seed(config.seed)
    if config.probe_modes is not None:
        probe_t = _add_modes(probe_t, config.probe_modes, generator)
    if initial_object is None:
        shape = canvas_shape(positions_t.cpu(), size)
        obj = constant_object(shape, counts_t.cpu(), probe_t)
    else:
        obj = torch.as_tensor(initial_object).to(torch.complex64)
        if obj.ndim != 2:
            raise ValueError(f"initial_object must have shape (H, W), got {tuple(obj.shape)}")
    mask_t = None if mask is None else torch.as_tensor(mask, dtype=torch.bool).to(device)

    params = _Parameters(obj, probe_t, n, config).to(device)
    object_params = [
        p for name, p in params.named_parameters() if name in ("object_real", "amplitude", "phase")
    ]
    probe_lr = (config.probe_learning_rate or 0.01) * float(probe_t.abs().max())
    groups = [{"params": object_params, "lr": config.learning_rate, "name": "object"}]
    if config.refine_probe:
        groups.append({"params": [params.probe_real], "lr": probe_lr, "name": "probe"})
    if config.correct_positions:
        groups.append({"params": [params.shifts], "lr": config.position_learning_rate, "name": "positions"})

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        where = positions_t[index] + params.position_shifts()[index]
        patches = extract_patches(params.object()[None], where[None], size)[0]
        predicted = diffraction_intensity(patches, params.probe())
        measured = counts_t[index]
        if config.loss == "poisson":
            loss = poisson_deviance(predicted, measured, mask_t)
        else:
            loss = amplitude_mae(predicted, measured, mask_t)
        if config.tv_weight > 0:
            loss = loss + config.tv_weight * total_variation(params.object())
        return loss

    def freeze(epoch: int) -> None:
        params.probe_real.requires_grad_(config.refine_probe and epoch >= config.probe_start_epoch)
        params.shifts.requires_grad_(config.correct_positions and epoch >= config.positions_start_epoch)

    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups)
    else:
        optimizer = torch.optim.LBFGS(
            [p for g in groups for p in g["params"]], lr=config.learning_rate,
            max_iter=config.lbfgs_iterations, line_search_fn="strong_wolfe",
        )  # fmt: skip
    scheduler = None
    if config.optimizer == "adam" and config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    elif config.optimizer == "adam" and config.scheduler == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, config.epochs // 3), gamma=0.3
        )

    history: list[float] = []
    stop_reason = "epochs"
    stalled = 0
    everything = torch.arange(n, device=device)
    for epoch in range(config.epochs):
        freeze(epoch)
        if config.optimizer == "adam":
            order = torch.randperm(n, generator=generator).to(device)
            total, seen = 0.0, 0
            for start in range(0, n, config.batch_size):
                index = order[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = batch_loss(index)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
                seen += len(index)
                if config.time_budget_s is not None and time.perf_counter() - started > config.time_budget_s:
                    stop_reason = "time budget"
                    break
            epoch_loss = total / max(seen, 1)
        else:

            def closure() -> torch.Tensor:
                # full-batch loss and gradient, accumulated chunk by chunk to bound memory
                optimizer.zero_grad(set_to_none=True)
                value = torch.zeros((), device=device)
                for start in range(0, n, config.batch_size):
                    index = everything[start : start + config.batch_size]
                    part = batch_loss(index) * (len(index) / n)
                    part.backward()
                    value += part.detach()
                return value

            epoch_loss = float(optimizer.step(closure))
        if scheduler is not None:
            scheduler.step()
        history.append(epoch_loss)
        if callback is not None:
            callback(
                RefinementProgress(
                    epoch=epoch,
                    loss=epoch_loss,
                    elapsed_s=time.perf_counter() - started,
                    snapshot=lambda: params.object().detach().cpu().numpy().astype(np.complex64),
                )
            )
        if stop_reason == "time budget":
            break
        if config.time_budget_s is not None and time.perf_counter() - started > config.time_budget_s:
            stop_reason = "time budget"
            break
        if config.convergence_tolerance is not None and len(history) > 1:
            change = abs(history[-1] - history[-2]) / max(abs(history[-2]), 1e-30)
            stalled = stalled + 1 if change < config.convergence_tolerance else 0
            if stalled >= config.patience:
                stop_reason = "converged"
                break

    with torch.no_grad():
        final_positions = positions_t + params.position_shifts()
        final_probe = params.probe().detach()
        final_object = params.object().detach()
        illumination = illumination_map(final_positions, final_probe, tuple(final_object.shape))
    return RefinementResult(
        object=final_object.cpu().numpy().astype(np.complex64),
        probe=final_probe.cpu().numpy().astype(np.complex64),
        positions=final_positions.cpu().numpy(),
        coverage=(illumination > 1e-3).cpu().numpy(),
        illumination=illumination.cpu().numpy().astype(np.float32),
        loss_history=history,
        epochs=len(history),
        elapsed_s=time.perf_counter() - started,
        stop_reason=stop_reason,
    )
