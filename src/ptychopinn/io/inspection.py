"""What a scan file holds and what is wrong with it (``ptychopinn inspect``)."""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import MANIFEST_NAME, BundleError, read_bundle
from .errors import ScanFileError, ScanValidationError
from .formats import detect_format, read_scan
from .registry import get_format
from .scan import Scan


@dataclass
class FileReport:
    """The result of :func:`inspect_file`.

    Attributes
    ----------
    path : str
    format : str or None
        The registered format's name (``"npz"``, ``"cxi"``, ``"ptychodus"``, ``"arrays"``, ...), or
        None when the format is unknown.
    contents : list of (name, shape, dtype)
        Every array in the file, read from headers only.
    summary : list of (label, value)
        What the scan holds, in the package's units (only when it could be read).
    problems : list of str
        Violations of the data contract: the file cannot be used as it is.
    notes : list of str
        Things worth knowing that do not stop the file from being used.
    """

    path: str
    format: str | None = None
    contents: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)
    summary: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format_text(self) -> str:
        lines = [f"{self.path} ({self.format or 'unknown format'})"]
        if self.contents:
            lines.append("contents:")
            width = max(len(name) for name, _, _ in self.contents)
            for name, shape, dtype in self.contents:
                lines.append(f"  {name:<{width}}  {str(shape):<20} {dtype}")
        if self.summary:
            lines.append("model:" if self.format == "model bundle" else "scan:")
            width = max(len(label) for label, _ in self.summary)
            lines.extend(f"  {label:<{width}}  {value}" for label, value in self.summary)
        if self.notes:
            lines.append("notes:")
            lines.extend(f"  - {note}" for note in self.notes)
        if self.problems:
            lines.append("problems:")
            lines.extend(f"  - {problem}" for problem in self.problems)
        else:
            lines.append("problems: none")
        return "\n".join(lines)


def _fmt(value: float | None, unit: str = "", spec: str = ".4g") -> str:
    return "unknown" if value is None else f"{value:{spec}}{unit}"


def _summarise(scan: Scan, report: FileReport) -> None:
    totals = scan.total_counts()
    n, size = scan.n_patterns, scan.pattern_size
    meta = scan.metadata
    pos = scan.positions
    report.summary += [
        (
            "patterns",
            f"{n} x {size} x {size} (counts, float32{', read lazily' if scan.is_lazy else ''})",
        ),
        (
            "counts per pattern",
            f"mean {totals.mean():.6g}, min {totals.min():.6g}, max {totals.max():.6g}",
        ),
        (
            "probe",
            f"{scan.probe_modes.shape[0]} mode(s) of {size} x {size}, power sum|P|^2 = "
            f"{float(np.sum(np.abs(scan.probe_modes) ** 2)):.6g}",
        ),
        (
            "positions (y, x)",
            f"y {pos[:, 0].min():.2f}..{pos[:, 0].max():.2f}, "
            f"x {pos[:, 1].min():.2f}..{pos[:, 1].max():.2f} object pixels",
        ),
        (
            "object",
            "none" if scan.object is None else f"{scan.object.shape[0]} x {scan.object.shape[1]} complex",
        ),
        (
            "detector mask",
            "none" if scan.mask is None else f"{int((~scan.mask).sum())} masked pixel(s)",
        ),
        ("energy", _fmt(meta.energy_ev, " eV")),
        ("wavelength", _fmt(meta.wavelength_m, " m")),
        ("detector distance", _fmt(meta.detector_distance_m, " m")),
        ("detector pixel", _fmt(meta.detector_pixel_size_m, " m")),
        ("object pixel", _fmt(scan.pixel_size_m(), " m")),
        ("photons per pattern (nominal)", _fmt(meta.photons_per_pattern)),
    ]
    if n > 1:
        from scipy.spatial import cKDTree

        distances, _ = cKDTree(pos).query(pos, k=2)
        nearest = distances[:, 1]
        report.summary.append(("nearest-neighbour step", f"median {np.median(nearest):.3f} pixels"))
        duplicates = int((nearest < 1e-9).sum())
        if duplicates:
            report.notes.append(f"{duplicates} pattern(s) share their position with another one")
    power = float(np.sum(np.abs(scan.probe_modes) ** 2))
    ratio = power / totals.mean() if totals.mean() > 0 else float("inf")
    if totals.mean() > 0:
        report.summary.append((
            "probe calibration factor",
            f"amplitude x {1 / np.sqrt(ratio):.4g} (power x {1 / ratio:.4g}) to match the mean counts; "
            "reconstruct applies it",
        ))  # fmt: skip
    if not 0.5 <= ratio <= 2.0:
        report.notes.append(
            f"probe power is {ratio:.3g} x the mean counts per pattern; the forward model "
            "expects them to match for a weakly absorbing object (the probe is not calibrated; "
            "reconstruct calibrates it, training rescales it with model.probe_calibration auto)"
        )
    if (totals == 0).any():
        report.notes.append(f"{int((totals == 0).sum())} pattern(s) hold no counts at all")


def _is_bundle(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return MANIFEST_NAME in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _inspect_bundle(path: str, report: FileReport, bundle_check: Callable[[str], Any] | None) -> FileReport:
    """What a model bundle holds; every check of :func:`read_bundle` is a problem here.

    ``bundle_check`` (the loader of :mod:`ptychopinn.workflows`) also rebuilds the network:
    a bundle that cannot be loaded is never reported as fine.
    """
    report.format = "model bundle"
    try:
        manifest, tensors = read_bundle(path)
        if bundle_check is not None:
            bundle_check(path)
    except BundleError as exc:
        report.problems.append(str(exc).removeprefix(f"{path}: "))
        return report
    report.contents = [
        (name, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in tensors.items()
    ]
    keys = (
        "format_version",
        "package_version",
        "created",
        "generator",
        "pattern_size",
        "gridsize",
        "channels",
        "probe_modes",
        "input_scale",
        "photon_scale",
        "training_data",
        "epochs_completed",
    )
    report.summary += [(key, str(manifest[key])) for key in keys if key in manifest]
    for name, payload in manifest.get("payloads", {}).items():
        report.summary.append((f"{name} sha256", f"{payload.get('sha256')} (verified)"))
    report.summary.append(("parameters", str(sum(t.numel() for t in tensors.values()))))
    return report


def inspect_file(
    path: str | os.PathLike,
    *,
    photons_per_pattern: float | None = None,
    bundle_check: Callable[[str], Any] | None = None,
) -> FileReport:
    """Report what a scan file or a model bundle holds and every problem found.

    Never raises for bad data. Reads every pattern (block by block for large HDF5 files) to
    check the values; verifies a bundle's hashes, and with ``bundle_check`` (a loader raising
    :class:`BundleError`) that its network can be rebuilt.
    """
    path = os.fspath(path)
    report = FileReport(path=path)
    try:
        report.format = detect_format(path)
    except ScanFileError as exc:
        report.problems.append(exc.reason)
        return report
    if report.format == "npz" and _is_bundle(path):
        return _inspect_bundle(path, report, bundle_check)
    return _inspect_scan(path, report, photons_per_pattern, get_format(report.format).contents)


def _inspect_scan(path: str, report: FileReport, photons_per_pattern: float | None, lister) -> FileReport:
    try:
        report.contents = lister(path)
    except (OSError, RuntimeError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        report.problems.append(f"cannot list contents ({exc}); is the file truncated?")
        return report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scan = read_scan(path, photons_per_pattern=photons_per_pattern)
            scan.validate(full=True)
            _summarise(scan, report)
        except (ScanFileError, ScanValidationError) as exc:
            report.problems.append(str(exc).removeprefix(f"{path}: "))
    report.notes.extend(str(w.message).removeprefix(f"{path}: ") for w in caught)
    return report
