"""Output folders: one run per folder, inputs never written, checkpoints saved atomically.

Every command that writes a folder claims it first (:func:`claim_output_folder`), before it
writes anything:

- the folder must be a folder (not a file, not under a file, creatable);
- nothing the run writes may be one of its inputs (paths compared after resolving links):
  ``reconstruct RUN --output-dir RUN --ptychodus-product`` would replace ptychodus' own
  ``product.h5`` and is refused, whatever the flags;
- a folder holding an earlier run's outputs is refused unless ``overwrite`` (which removes
  that run's own outputs first, and nothing else) or, for training, ``resume`` (which
  continues that run). A record of each run, ``.ptychopinn-run.json``, says what it wrote.

So the checkpoints, logs and bundle in a folder always belong to one run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..io import atomic_path, write_json

RUN_RECORD = ".ptychopinn-run.json"

#: What each command writes into its output folder (files and sub-folders).
_TRAINING_OUTPUTS = (
    "config.yaml",
    "checkpoints",
    "logs",
    "tensorboard",
    "mlflow.db",
    "mlflow-artifacts",
    "lightning_logs",
    "model.zip",
    "model_best.zip",
    "training_summary.json",
    "training_curves.png",
    "report.html",
)
_RECONSTRUCTION_OUTPUTS = (
    "reconstruction.npz",
    "amplitude.tiff",
    "phase.tiff",
    "amplitude.png",
    "phase.png",
    "metrics.json",
    "comparison.png",
    "product.h5",
    "report.html",
)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "train": _TRAINING_OUTPUTS,
    "pretrain": (*_TRAINING_OUTPUTS, "pretrain.json", "probe.npz"),
    "infer": (*_RECONSTRUCTION_OUTPUTS, "inference.json"),
    "reconstruct": (*_RECONSTRUCTION_OUTPUTS, "frc.png", "loss.json", "loss.png", "reconstruct.json",
                    "training", "scan.npz"),
    "evaluate": ("metrics.json", "comparison.png", "frc.png", "report.html"),
    "watch": ("phase.png", "amplitude.png", "reconstruction.npz", "live.html", "live.json", "scan.npz",
              "final"),
    "example": ("scan.npz", "scan.cxi", "scan_overview.png", "single-pass", "training", "reconstruction",
                "report.html", "example.json"),
}  # fmt: skip


def _inputs_read(path: str | os.PathLike) -> list[Path]:
    """The files reading ``path`` touches: itself, or a folder's files, or a ptychodus partner."""
    from ..io.ptychodus import ptychodus_pair

    path = Path(path)
    if path.is_dir():
        return [p.resolve() for p in path.iterdir() if p.is_file()]
    files = [path.resolve()]
    pair = ptychodus_pair(path) if path.is_file() and path.suffix.lower() in (".h5", ".hdf5") else None
    if pair is not None:
        files += [p.resolve() for p in pair]
    return files


def claim_output_folder(
    output_dir: str | os.PathLike,
    *,
    command: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    resume: bool = False,
    writes: Iterable[str] | None = None,
) -> Path:
    """Make ``output_dir`` this run's folder, or refuse with a message naming what is wrong.

    Parameters
    ----------
    output_dir : path
    command : str
        The command writing there (a key of :data:`OUTPUTS`).
    inputs : paths
        Every file or folder the run reads (scans, bundles, configurations); None entries
        are skipped.
    overwrite : bool
        Replace an earlier run's outputs: the files and folders it recorded (or, without a
        record, those this command writes) are removed first. Inputs are never removed.
    resume : bool
        Continue the earlier run in this folder (training): its outputs are kept.
    writes : names, optional
        What the run writes (default :data:`OUTPUTS` of ``command``).

    Returns
    -------
    Path
        The folder, created, holding this run's record.

    Raises
    ------
    ValueError
        Empty name; a file in the way; an output that is an input; a used folder without
        ``overwrite``; a folder that cannot be created.
    """
    if output_dir is None or not os.fspath(output_dir).strip():
        raise ValueError("--output-dir: empty; name the folder for the outputs")
    out = Path(output_dir)
    writes = tuple(OUTPUTS[command] if writes is None else writes)
    if is_secondary_process():  # a worker rank of a distributed run: rank 0 claimed the folder
        out.mkdir(parents=True, exist_ok=True)
        return out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out}: is a file, not a folder")
    inputs = [given for given in inputs if given is not None and os.path.exists(given)]
    _refuse_writing_inputs(out, writes, inputs)
    protected = {read for given in inputs for read in _inputs_read(given)}
    record = _read_record(out)
    present = [name for name in writes if (out / name).exists() or (out / name).is_symlink()]
    if record is not None or present:
        earlier = record.get("command", "unknown") if isinstance(record, dict) else "unknown"
        if resume:
            pass  # continue the run whose outputs these are
        elif overwrite:
            recorded = record.get("writes", []) if isinstance(record, dict) else []
            _remove_outputs(out, {*present, *(n for n in recorded if isinstance(n, str))}, protected)
        else:
            shown = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "")
            raise ValueError(
                f"--output-dir {out}: holds the outputs of an earlier '{earlier}' run "
                f"({shown or RUN_RECORD}); use --overwrite to replace them, or choose a new folder"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"--output-dir {out}: a file stands where a folder is needed") from None
    except NotADirectoryError:
        raise ValueError(f"--output-dir {out}: lies under a file, not a folder") from None
    except OSError as exc:
        raise ValueError(f"--output-dir {out}: cannot be created ({exc.strerror or exc})") from None
    _write_record(out, command, writes, resumed=resume and record is not None)
    return out


def is_secondary_process() -> bool:
    """True in a non-zero rank of a distributed launch (Lightning, torchrun, SLURM)."""
    for name in ("LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK"):
        value = os.environ.get(name)
        if value not in (None, "", "0"):
            return True
    return False


def _refuse_writing_inputs(out: Path, writes: tuple[str, ...], inputs: Iterable[Any]) -> None:
    targets = {(out / name).resolve(): name for name in writes}
    targets[(out / RUN_RECORD).resolve()] = RUN_RECORD
    for given in inputs:
        for read in _inputs_read(given):
            for target, name in targets.items():
                if read == target or target in read.parents:
                    raise ValueError(
                        f"--output-dir {out}: this run writes {name} there, which would replace "
                        f"its input {given}; choose another --output-dir"
                    )


def _read_record(out: Path) -> dict[str, Any] | None:
    path = out / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {"command": "unknown"}
    return record if isinstance(record, dict) else {"command": "unknown"}


def _remove_outputs(out: Path, names: Iterable[str], protected: set[Path]) -> None:
    for name in names:
        if not name or "/" in name or name in (".", ".."):
            continue  # only direct entries of this folder, never a path elsewhere
        path = out / name
        resolved = path.resolve()
        if any(read == resolved or resolved in read.parents for read in protected):
            continue  # an input of this run: never removed
        if path.is_symlink():
            path.unlink()
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def _write_record(out: Path, command: str, writes: tuple[str, ...], *, resumed: bool) -> None:
    record = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed": resumed,
        "writes": list(writes),
    }
    write_json(out / RUN_RECORD, record)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file *beside* the target, then renamed onto it.

    Lightning's own atomic save stages the file under ``$TMPDIR``; on clusters that is often
    another filesystem, where the final move is a copy, and a kill during the copy leaves a
    truncated ``last.ckpt`` that no ``--resume`` can read. A rename within one folder is atomic.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        import torch

        if storage_options is not None:
            raise TypeError("storage_options are not supported for local checkpoints")
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)
