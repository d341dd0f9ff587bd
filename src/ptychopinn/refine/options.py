"""Options of the physics refinement: one frozen dataclass, validated when built.

Options a solver decides for itself (step size, batch size, noise model, when the probe
starts to move) default to ``None`` and take the solver's own default
(:mod:`ptychopinn.refine.solvers`); :meth:`RefinementConfig.resolved` fills them in.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

OPTIMIZERS = ("auto", "preconditioned", "lbfgs", "adam")
PARAMETERIZATIONS = ("complex", "amplitude_phase")
REFINE_LOSSES = ("poisson", "gaussian", "amplitude_mae")
REFINE_SCHEDULERS = ("none", "cosine", "step")


@dataclass(frozen=True)
class RefinementConfig:
    """Options of :func:`~ptychopinn.refine.refine_object`.

    Attributes
    ----------
    epochs : int
        Maximum passes over all positions.
    time_budget_s : float or None
        Stop after this many seconds, whole refinement. Checked after every minibatch (and
        every L-BFGS function evaluation), so an epoch never runs far past it.
    optimizer : {"auto", "preconditioned", "lbfgs", "adam"}
        ``preconditioned``: per-minibatch updates of the PIE/LSQML class, the object
        gradient divided by the illumination and the probe gradient by the object
        intensity; progresses from the first epoch on large blind problems. ``lbfgs``:
        full-batch L-BFGS with a strong-Wolfe line search; the most robust at low dose.
        ``adam``: minibatch Adam. ``auto`` (default): ``preconditioned`` when the probe is
        refined, else ``lbfgs`` (measured: docs/benchmarks.md, "Refinement solvers").
    learning_rate : float or None
        Step size: relative step of the preconditioned update (1 is a full PIE step),
        L-BFGS initial step, or Adam step. Default: the solver's.
    batch_size : int or None
        Positions per update (preconditioned, adam), or per chunk of the full-batch L-BFGS
        evaluation (memory only). Default: the solver's (preconditioned: by dose, 32 for
        bright scans, up to the whole scan for dim ones).
    scheduler : {"none", "cosine", "step"}
        Per-epoch learning-rate schedule (adam only).
    loss : {"poisson", "gaussian", "amplitude_mae"} or None
        Noise model. ``poisson``: the Poisson deviance of the counts. ``gaussian``: least
        squares on amplitudes, ``0.5 (sqrt(lambda) - sqrt(I))^2`` per pixel (the
        variance-stabilised Poisson model; pty-chi's LSQML default). ``amplitude_mae``:
        ``|sqrt(lambda) - sqrt(I)|``. Default: the solver's (``gaussian`` for
        preconditioned, which takes ``gaussian`` or ``poisson``; ``poisson`` for the others).
    parameterization : {"complex", "amplitude_phase"}
        Optimise real/imaginary parts, or amplitude and phase (lbfgs, adam).
    calibrate_probe : bool
        Scale the probe's power to the measured counts before refining (the starting object
        then predicts the mean counts), so a probe guess in any scale gives the same result.
        The factor is reported in :attr:`RefinementResult.probe_scale`. The object then
        carries relative transmission (mean near 1); turn this off to keep the absolute
        transmission a probe calibrated in counts (a flux measurement) gives.
    refine_probe : bool
        Also optimise the probe (all its incoherent modes).
    probe_modes : int or None
        Grow the probe to this many incoherent modes before refining (needs refine_probe);
        new modes start orthogonal (:func:`~ptychopinn.physics.add_probe_modes`).
    new_mode_power : float
        Share of the probe power given to the added modes at the start.
    probe_learning_rate : float or None
        lbfgs/adam: relative step for the probe (scaled by the probe's peak amplitude);
        default 0.01. Preconditioned: its probe step (default 1).
    probe_start_epoch : int or None
        First epoch of probe refinement (the object settles first). Default: the solver's.
    probe_support_radius_px : float or None
        Keep the probe zero outside a centred disk of this radius (probe pixels).
    hold_probe_power : bool
        After every probe update, rescale the modes' total power back to the calibrated
        value, so the object carries the transmission and the probe the scale (the
        object/probe scale ambiguity). Preconditioned and adam.
    correct_positions : bool
        Optimise a shift per position, bounded by ``max_position_shift_px``; the mean shift
        is held at zero (a common shift is the object's, not the positions').
    position_learning_rate : float
        Adam step of the shifts, in pixels.
    max_position_shift_px : float
    positions_start_epoch : int
    refine_background : bool
        Also fit an additive background per detector pixel (counts, >= 0): air scatter,
        detector offsets, the incoherent part of real data.
    tv_weight : float
        Weight of a total-variation prior on the object (low dose); 0 disables it
        (lbfgs, adam).
    convergence_tolerance : float or None
        Stop when the epoch loss changed by less than this (relative) for ``patience`` epochs.
    patience : int
    lbfgs_iterations : int
        Inner iterations per L-BFGS epoch.
    seed : int
        Fixes the minibatch order.
    """

    epochs: int = 1000
    time_budget_s: float | None = None
    optimizer: str = "auto"
    learning_rate: float | None = None
    batch_size: int | None = None
    scheduler: str = "none"
    loss: str | None = None
    parameterization: str = "complex"
    calibrate_probe: bool = True
    refine_probe: bool = False
    probe_modes: int | None = None
    new_mode_power: float = 0.1
    probe_learning_rate: float | None = None
    probe_start_epoch: int | None = None
    probe_support_radius_px: float | None = None
    hold_probe_power: bool = True
    correct_positions: bool = False
    position_learning_rate: float = 0.02
    max_position_shift_px: float = 3.0
    positions_start_epoch: int = 10
    refine_background: bool = False
    tv_weight: float = 0.0
    convergence_tolerance: float | None = None
    patience: int = 5
    lbfgs_iterations: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"refinement.{name} = {getattr(self, name)!r}: {rule}")

        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value: object) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        for name in ("epochs", "patience", "lbfgs_iterations"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "must be an integer >= 1")
        if self.batch_size is not None and (not is_int(self.batch_size) or self.batch_size < 1):
            fail("batch_size", "must be an integer >= 1, or None")
        for name in ("positions_start_epoch", "seed"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "must be an integer >= 0")
        if self.probe_start_epoch is not None and (
            not is_int(self.probe_start_epoch) or self.probe_start_epoch < 0
        ):
            fail("probe_start_epoch", "must be an integer >= 0, or None")
        for name in ("position_learning_rate", "max_position_shift_px"):
            if not (is_number(getattr(self, name)) and getattr(self, name) > 0):
                fail(name, "must be a finite number > 0")
        for name in (
            "learning_rate", "time_budget_s", "probe_learning_rate", "convergence_tolerance",
            "probe_support_radius_px",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not (is_number(value) and value > 0):
                fail(name, "must be a finite number > 0, or None")
        if not (is_number(self.tv_weight) and self.tv_weight >= 0):
            fail("tv_weight", "must be a finite number >= 0")
        if not (is_number(self.new_mode_power) and 0 < self.new_mode_power < 1):
            fail("new_mode_power", "must lie between 0 and 1 (exclusive)")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in REFINE_SCHEDULERS:
            fail("scheduler", f"must be one of {', '.join(REFINE_SCHEDULERS)}")
        if self.loss is not None and self.loss not in REFINE_LOSSES:
            fail("loss", f"must be one of {', '.join(REFINE_LOSSES)}, or None")
        if self.parameterization not in PARAMETERIZATIONS:
            fail("parameterization", f"must be one of {', '.join(PARAMETERIZATIONS)}")
        if self.probe_modes is not None:
            if not is_int(self.probe_modes) or self.probe_modes < 1:
                fail("probe_modes", "must be an integer >= 1, or None")
            if not self.refine_probe:
                fail("probe_modes", "adding probe modes needs refine_probe = True")
        for name in (
            "refine_probe", "correct_positions", "calibrate_probe", "hold_probe_power", "refine_background",
        ):  # fmt: skip
            if not isinstance(getattr(self, name), bool):
                fail(name, "must be true or false")
        if self.solver_name() == "preconditioned":
            if self.loss == "amplitude_mae":
                fail("loss", "the preconditioned solver takes gaussian or poisson; use lbfgs or adam")
            if self.parameterization != "complex":
                fail("parameterization", "the preconditioned solver updates the complex object")
            if self.tv_weight > 0:
                fail("tv_weight", "the preconditioned solver has no TV prior; use optimizer lbfgs or adam")

    def solver_name(self) -> str:
        """The solver that runs: ``optimizer``, with ``auto`` decided by ``refine_probe``."""
        if self.optimizer != "auto":
            return self.optimizer
        return "preconditioned" if self.refine_probe else "lbfgs"

    def resolved(self) -> RefinementConfig:
        """A copy naming its solver, every solver-decided option (``None``) set to its default."""
        from .solvers import SOLVERS

        name = self.solver_name()
        changes = {key: value for key, value in SOLVERS[name].defaults.items() if getattr(self, key) is None}
        return dataclasses.replace(self, optimizer=name, **changes)
