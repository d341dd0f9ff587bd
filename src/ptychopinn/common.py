"""Option fields several options classes share, declared once: the device (``DeviceOptions``,
``--accelerator``, ``--devices``), the photon scale (``--nphotons``), progress bars
(``--progress``) and the output folder (``--output-dir``).

This module depends on nothing else in the package but :mod:`ptychopinn.options`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .options import Options, option

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def accelerator_option(help: str = "auto (a GPU when present), cpu, gpu, cuda, mps, tpu") -> Any:  # noqa: A002
    """The ``--accelerator`` field (``--device``: upstream's spelling)."""
    return option(
        "auto", f"{help} (--device: upstream's spelling)", flags=("--accelerator", "--device"),
        choices=ACCELERATORS, default_text="",
    )  # fmt: skip


def devices_option(help: str = "auto, a count (-1: all), or indices like 0,1") -> Any:  # noqa: A002
    """The ``--devices`` field: ``auto``, a count, or indices (text ``0,1`` on the command line)."""
    return option("auto", help, flags=("--devices",), default_text="")


def photons_option(**extra: Any) -> Any:
    """The ``--nphotons`` field: the photon scale of NPZ files holding normalised amplitudes."""
    return option(
        None, "photons per pattern for NPZ files with normalised amplitudes", flags=("--nphotons",),
        minimum=0.0, exclusive_minimum=True, **extra,
    )  # fmt: skip


def progress_option() -> Any:
    """The ``--progress`` field (``--no-progress``, ``--quiet``); None: bars on a terminal."""
    return option(
        None, "progress bars", flags=("--progress",), default_text="on a terminal",
        shortcuts=((("--quiet",), False, "the same as --no-progress"),),
    )  # fmt: skip


def output_dir_option(help: str = "folder for the outputs", default: Any = None) -> Any:  # noqa: A002
    """The ``--output-dir`` field (``--output_dir``: upstream's spelling); required without a default."""
    return option(
        default, help, flags=("--output-dir", "--output_dir"), path=True, required=default is None,
        metavar="OUTPUT_DIR",
    )  # fmt: skip


def parse_devices(devices: Any) -> int | str | tuple[int, ...]:
    """``auto``, a count (-1: all) or a tuple of indices, from a value or its text (``0,1``).

    Raises
    ------
    ValueError
        The rule broken (the caller names the field).
    """
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return "auto"
        try:
            devices = [int(part) for part in text.split(",") if part.strip()] if "," in text else int(text)
        except ValueError:
            raise ValueError("must be auto, a count (-1 for all), or a list of indices like 0,1") from None
    if isinstance(devices, (list, tuple)):
        if not devices or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
            raise ValueError("a list of devices must hold indices >= 0")
        return tuple(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or (devices < 1 and devices != -1):
        raise ValueError("must be auto, a count >= 1 (or -1 for all), or a list of indices")
    return devices


@dataclass(frozen=True)
class DeviceOptions(Options):
    """Where a command's network and refinement run (``auto``: a GPU when present)."""

    section = "device"
    accelerator: str = accelerator_option("auto (a GPU when present), cpu, gpu, cuda, mps")
    devices: int | str | tuple[int, ...] = devices_option("device indices (the first is used), or auto")

    def normalise(self) -> None:
        if isinstance(self.accelerator, str):
            self._set("accelerator", self.accelerator.lower())

    def check(self) -> None:
        try:
            self._set("devices", parse_devices(self.devices))
        except ValueError as exc:
            self.fail("devices", str(exc))
