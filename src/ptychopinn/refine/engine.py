"""Physics refinement: the object (and optionally the probe, positions and a detector
background) fitted to the measured counts through the forward model.

    minimise_O,P,dr,b  sum_k  L( sum_m |F(P_m * Extract(O, r_k + dr_k))|^2 + b ,  I_k )

The same operators as training and inference (bilinear sub-pixel extraction, orthonormal
far field): a network's stitched prediction is polished in the very model it was trained
with. The pieces: :mod:`.options` (the one options class), :mod:`.problem` (parameters,
forward model, noise models, probe constraints), :mod:`.solvers` (one file per solver, each
owning its defaults) and :mod:`.loop` (epochs, budget, convergence). This module assembles
them: calibration of the probe, its modes, the starting object, and the result.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..physics import as_probe_modes, canvas_shape
from ..physics.forward_models import Geometry, build_forward_model
from .loop import RefinementProgress, run_epochs
from .options import RefinementConfig
from .problem import RefinementProblem, calibration_factor, start_probe
from .solvers import SOLVERS


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
    probe_scale : float
        The amplitude factor the probe was multiplied by to calibrate it to the counts
        (1.0 when ``calibrate_probe`` is off).
    phase_ramp : tuple of float
        ``(ky, kx)`` radians per pixel: the linear phase ramp removed from the object (and
        given to the probe, which leaves the model's intensities unchanged).
    background : numpy.ndarray or None
        float32 ``(N, N)`` refined additive background (counts), when refined.
    batch_size : int
        The minibatch size used (the solver's choice when the options left it open).
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
    probe_scale: float = 1.0
    phase_ramp: tuple[float, float] = (0.0, 0.0)
    background: np.ndarray | None = None
    batch_size: int = 0


def constant_object(shape: tuple[int, int], counts: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """A flat object whose predicted mean counts match the data: ``a = sqrt(<sum I> / sum |P|^2)``.

    With a calibrated probe (see ``RefinementConfig.calibrate_probe``) ``a`` is 1.
    """
    power = float((probe.abs() ** 2).sum())
    mean_counts = float(counts.sum(dim=(-2, -1)).double().mean())
    value = math.sqrt(mean_counts / power) if power > 0 and mean_counts > 0 else 1.0
    return torch.full(shape, value, dtype=torch.complex64)


def linear_phase_ramp(obj: torch.Tensor, weight: torch.Tensor) -> tuple[float, float]:
    """The linear phase ramp ``(ky, kx)`` (rad/pixel) of an object, weighted, wrap-free.

    Taken from the weighted mean phase difference between neighbouring pixels,
    ``k_y = arg sum w O(y+1, x) conj O(y, x)``, so phase wraps do not bias it.
    """
    w = weight.to(obj.real.dtype)
    dy = (w[1:, :] * w[:-1, :] * obj[1:, :] * obj[:-1, :].conj()).sum()
    dx = (w[:, 1:] * w[:, :-1] * obj[:, 1:] * obj[:, :-1].conj()).sum()
    return float(torch.angle(dy)), float(torch.angle(dx))


def remove_phase_ramp(
    obj: torch.Tensor, probe: torch.Tensor, ramp: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Take a linear phase ramp off the object and give it to the probe.

    ``O'(r) = O(r) exp(-i k.r)`` and ``P'(s) = P(s) exp(+i k.s)`` predict the same
    intensities at every position (each exit wave only gains a constant phase): the ramp is
    the probe/object ambiguity, not the sample.
    """
    ky, kx = ramp
    rows = torch.arange(obj.shape[0], device=obj.device, dtype=torch.float64)
    cols = torch.arange(obj.shape[1], device=obj.device, dtype=torch.float64)
    plane = torch.polar(torch.ones((), dtype=torch.float64, device=obj.device),
                        -(ky * rows[:, None] + kx * cols[None, :]))  # fmt: skip
    size = probe.shape[-1]
    local = torch.arange(size, device=probe.device, dtype=torch.float64)
    probe_plane = torch.polar(torch.ones((), dtype=torch.float64, device=probe.device),
                              ky * local[:, None] + kx * local[None, :])  # fmt: skip
    return (obj * plane).to(torch.complex64), (probe * probe_plane).to(torch.complex64)


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
    remove_ramp: bool | None = None,
    geometry: Geometry | None = None,
) -> RefinementResult:
    """Refine an object (and optionally the probe, positions, background) against counts.

    Parameters
    ----------
    counts : array
        Measured intensities in photon counts, ``(n, N, N)``, zero frequency centred.
    positions : array
        ``(n, 2)`` ``(y, x)`` object pixels (sub-pixel).
    probe : array
        Complex probe ``(N, N)`` or ``(M, N, N)``, in any scale when
        ``config.calibrate_probe`` (the default), else calibrated in counts.
    initial_object : array, optional
        Starting object ``(H, W)`` (e.g. a network's stitched prediction); default a flat
        unit object on a canvas holding every position.
    mask : array, optional
        Detector mask ``(N, N)``, True where valid; masked pixels are left out of the fit.
    config : RefinementConfig, optional
    device : torch.device or str
    callback : callable, optional
        Called with a :class:`RefinementProgress` after every epoch.
    remove_ramp : bool, optional
        Take the linear phase ramp (weighted by the illumination) off the returned object
        and give it to the returned probe (:func:`remove_phase_ramp`). Default: when the
        probe is refined (with a known probe a ramp is the sample's, not an ambiguity).
    geometry : Geometry, optional
        The wavelength and object pixel size, for a forward model that needs them
        (``config.forward_model`` ``near_field``); the far field needs none.

    Returns
    -------
    RefinementResult

    Examples
    --------
    >>> from ptychopinn.simulate import SimulationConfig, simulate_scan
    >>> scan = simulate_scan(SimulationConfig(n_positions=64, pattern_size=32, seed=0))
    >>> result = refine_object(scan.diffraction, scan.positions, scan.probe * 7.0,
    ...                        config=RefinementConfig(epochs=3))
    >>> result.object.shape  # the object canvas, object pixels
    (92, 92)
    >>> 0.1 < result.probe_scale < 0.2  # the probe given 7x too strong: calibrated back
    True
    """
    config = (config if config is not None else RefinementConfig()).resolved()
    device = torch.device(device)
    started = time.perf_counter()
    counts_t = torch.as_tensor(
        np.asarray(counts, dtype=np.float32) if not torch.is_tensor(counts) else counts
    )
    counts_t = counts_t.to(device, torch.float32)
    positions_t = torch.as_tensor(positions, dtype=torch.float64).to(device)
    probe_t = as_probe_modes(torch.as_tensor(probe).to(torch.complex64)).to(device)
    n, size = counts_t.shape[0], counts_t.shape[-1]
    if counts_t.ndim != 3 or counts_t.shape[1:] != (size, size):
        raise ValueError(f"counts must have shape (n, N, N), got {tuple(counts_t.shape)}")
    if positions_t.shape != (n, 2):
        raise ValueError(f"positions must have shape ({n}, 2), got {tuple(positions_t.shape)}")
    if probe_t.shape[-2:] != (size, size):
        raise ValueError(
            f"probe size {tuple(probe_t.shape[-2:])} does not match the patterns ({size}, {size})"
        )
    if initial_object is None:
        obj = torch.ones(canvas_shape(positions_t.cpu(), size), dtype=torch.complex64)
    else:
        obj = torch.as_tensor(initial_object).to(torch.complex64)
        if obj.ndim != 2:
            raise ValueError(f"initial_object must have shape (H, W), got {tuple(obj.shape)}")
    obj = obj.to(device)
    mask_t = None if mask is None else torch.as_tensor(mask, dtype=torch.bool).to(device)

    forward = build_forward_model(config.forward_model, config.forward_settings(), geometry)
    scale = 1.0
    if config.calibrate_probe:
        scale = calibration_factor(counts_t, positions_t, probe_t, obj, mask_t, forward)
        probe_t = probe_t * scale
    probe_t = start_probe(probe_t, config)
    if config.batch_size is None:  # the solver decides from the data (the preconditioned one: by dose)
        config = dataclasses.replace(config, batch_size=SOLVERS[config.optimizer].batch_size_for(counts_t))
    problem = RefinementProblem(counts_t, positions_t, probe_t, obj, mask_t, config, forward).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    solver = SOLVERS[config.optimizer](problem, config, generator)
    history, stop_reason = run_epochs(problem, solver, config, started, callback)

    with torch.no_grad():
        final_positions = problem.corrected_positions()
        illumination = problem.illumination()
        final_object, final_probe = problem.object().detach(), problem.probe().detach()
        ramp = (0.0, 0.0)
        if remove_ramp if remove_ramp is not None else config.refine_probe:
            ramp = linear_phase_ramp(final_object, illumination / illumination.max().clamp_min(1e-30))
            final_object, final_probe = remove_phase_ramp(final_object, final_probe, ramp)
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
        probe_scale=scale,
        phase_ramp=ramp,
        batch_size=config.batch_size,
        background=problem.background_counts().detach().cpu().numpy() if config.refine_background else None,
    )
