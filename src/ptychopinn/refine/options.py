"""Options of the physics refinement: one :class:`~ptychopinn.options.Options`, validated when built.

Options a solver decides for itself (step size, batch size, noise model, when the probe
starts to move) default to ``None`` and take the solver's own default
(:mod:`ptychopinn.refine.solvers`); :meth:`RefinementConfig.resolved` fills them in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..options import Options, option
from ..registry import FORWARD_MODELS, SOLVERS

PARAMETERIZATIONS = ("complex", "amplitude_phase")
REFINE_LOSSES = ("poisson", "gaussian", "amplitude_mae")
REFINE_SCHEDULERS = ("none", "cosine", "step")


def _optimizer_names() -> tuple[str, ...]:
    """``auto`` and every registered solver (the ``optimizer`` choices)."""
    return ("auto", *SOLVERS.names())


def __getattr__(name: str) -> Any:
    if name == "OPTIMIZERS":  # kept for callers of the former constant: the registry's names
        return _optimizer_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _solver_default_text(option_name: str) -> Any:
    """Help's default for an option each solver decides (``name value`` per solver), when asked."""

    def text() -> str:
        shown = {None: "by dose"}
        return "the solver's: " + ", ".join(
            f"{name} {shown.get(solver.defaults[option_name], solver.defaults[option_name])}"
            for name, solver in SOLVERS.items()
        )

    return text


@dataclass(frozen=True)
class RefinementConfig(Options):
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
    solver_options : dict
        The chosen solver's own options, by name (the fields of its ``options`` class, e.g.
        the preconditioned solver's ``momentum``); the solver's defaults for the rest.
    forward_model : str
        How the exit wave reaches the detector: a registered forward model
        (:mod:`ptychopinn.physics.forward_models`: ``far_field``, ``near_field``).
    forward_model_options : dict
        Its own options (``near_field``: ``distance_m``, ``focus_to_sample_m``).
    """

    section = "refinement"
    epochs: int = option(1000, "maximum refinement epochs", flags=("--epochs",), minimum=1)
    time_budget_s: float | None = option(
        None, "stop refining after this many seconds", flags=("--time-budget",), metavar="SECONDS",
        minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    optimizer: str = option(
        "auto", "auto (preconditioned with --refine-probe, else lbfgs), or a solver: preconditioned "
        "(PIE/LSQML-class minibatch updates), lbfgs or adam", flags=("--optimizer",),
        choices=_optimizer_names, default_text="auto",
    )  # fmt: skip
    learning_rate: float | None = option(
        None, "step size", flags=("--learning-rate", "--lr"), minimum=0.0, exclusive_minimum=True,
        default_text=_solver_default_text("learning_rate"),
    )  # fmt: skip
    batch_size: int | None = option(
        None, "positions per update, or per chunk for lbfgs", flags=("--batch-size",), minimum=1,
        default_text=_solver_default_text("batch_size"),
    )  # fmt: skip
    scheduler: str = option("none", "per-epoch learning-rate schedule (adam)", choices=REFINE_SCHEDULERS)
    loss: str | None = option(
        None, "noise model", flags=("--loss",), choices=REFINE_LOSSES,
        default_text=_solver_default_text("loss"),
    )  # fmt: skip
    parameterization: str = option("complex", "optimised variables (lbfgs, adam)", choices=PARAMETERIZATIONS)
    calibrate_probe: bool = option(
        True, "scale the probe's power to the measured counts (the factor in reconstruct.json); "
        "--no-probe-calibration uses the power as given", flags=("--probe-calibration",),
    )  # fmt: skip
    refine_probe: bool = option(False, "also refine the probe", flags=("--refine-probe",))
    probe_modes: int | None = option(
        None, "with --refine-probe: grow the probe to this many incoherent modes", flags=("--probe-modes",),
        minimum=1,
    )  # fmt: skip
    new_mode_power: float = option(
        0.1, "share of the probe power given to added modes", minimum=0.0, exclusive_minimum=True,
        maximum=1.0, exclusive_maximum=True,
    )  # fmt: skip
    probe_learning_rate: float | None = option(
        None, "relative probe step (lbfgs, adam: 0.01; preconditioned: 1)", minimum=0.0,
        exclusive_minimum=True,
    )  # fmt: skip
    probe_start_epoch: int | None = option(None, "first epoch of probe refinement", minimum=0)
    probe_support_radius_px: float | None = option(
        None, "with --refine-probe: keep the probe zero outside a centred disk of this radius",
        flags=("--probe-support-radius",), metavar="PIXELS", minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    hold_probe_power: bool = option(True, "keep the probe's total power at its calibrated value")
    correct_positions: bool = option(False, "also refine the scan positions", flags=("--correct-positions",))
    position_learning_rate: float = option(
        0.02, "Adam step of the position shifts, pixels", minimum=0.0, exclusive_minimum=True
    )
    max_position_shift_px: float = option(
        3.0, "bound on position corrections", flags=("--max-position-shift",), metavar="PIXELS",
        minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    positions_start_epoch: int = option(10, "first epoch of position correction", minimum=0)
    refine_background: bool = option(
        False, "also fit an additive background per detector pixel (counts)", flags=("--refine-background",)
    )
    tv_weight: float = option(
        0.0, "total-variation prior weight for low dose", flags=("--tv-weight",), minimum=0.0,
        default_text="0: off",
    )  # fmt: skip
    convergence_tolerance: float | None = option(
        None, "stop when the loss changes by less than this (relative) for --patience epochs",
        flags=("--tolerance",), minimum=0.0, exclusive_minimum=True,
    )  # fmt: skip
    patience: int = option(
        5, "epochs of little change before stopping at --tolerance", flags=("--patience",), minimum=1
    )
    lbfgs_iterations: int = option(5, "inner iterations per L-BFGS epoch", minimum=1)
    seed: int = option(0, "fixes minibatch order and training", flags=("--seed",), minimum=0)
    solver_options: dict[str, Any] = option(
        help="the chosen solver's own options (its Options class; none: its defaults)",
        flags=("--solver",), plugins=SOLVERS, group="solver options",
    )  # fmt: skip
    forward_model: str = option(
        "far_field", "how the exit wave reaches the detector (near_field: Fresnel over "
        "--forward-model.distance-m)", flags=("--forward-model",), choices=FORWARD_MODELS,
        group="forward model",
    )  # fmt: skip
    forward_model_options: dict[str, Any] = option(
        help="the forward model's own options", flags=("--forward-model",), plugins=FORWARD_MODELS,
        group="forward model",
    )  # fmt: skip

    def check(self) -> None:
        self.solver_settings()  # the chosen solver takes these options, with valid values
        self.forward_settings()  # and the forward model these
        if self.probe_modes is not None and not self.refine_probe:
            self.fail("probe_modes", "adding probe modes needs refine_probe = True")
        if self.solver_name() == "preconditioned":
            if self.loss == "amplitude_mae":
                self.fail("loss", "the preconditioned solver takes gaussian or poisson; use lbfgs or adam")
            if self.parameterization != "complex":
                self.fail("parameterization", "the preconditioned solver updates the complex object")
            if self.tv_weight > 0:
                self.fail("tv_weight", "the preconditioned solver has no TV prior; use lbfgs or adam")

    def solver_name(self) -> str:
        """The solver that runs: ``optimizer``, with ``auto`` decided by ``refine_probe``."""
        if self.optimizer != "auto":
            return self.optimizer
        return "preconditioned" if self.refine_probe else "lbfgs"

    def forward_settings(self) -> Options:
        """The chosen forward model's own options, from ``forward_model_options``."""
        return self.plugin_options("forward_model_options", self.forward_model)

    def solver_settings(self) -> Options:
        """The chosen solver's own options (its ``options`` class), from ``solver_options``."""
        return self.plugin_options("solver_options", self.solver_name())

    def resolved(self) -> RefinementConfig:
        """A copy naming its solver, every solver-decided option (``None``) set to its default.

        ``solver_options`` then holds every option of the solver's own, defaults included (the
        record of what ran).
        """
        name = self.solver_name()
        changes = {key: value for key, value in SOLVERS[name].defaults.items() if getattr(self, key) is None}
        own = self.solver_settings().to_dict()
        forward = self.forward_settings().to_dict()
        return dataclasses.replace(
            self, optimizer=name, solver_options=own, forward_model_options=forward, **changes
        )
