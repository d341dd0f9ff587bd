"""Stopping a training run cleanly on SIGINT or SIGTERM, with a checkpoint to resume from.

Lightning ignores SIGTERM outside SLURM and turns SIGINT into an exit; batch schedulers send
SIGTERM before they kill a job, and users press Ctrl+C. Both should leave a checkpoint and a
valid bundle, and ``--resume last`` should continue where the run stopped.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class GracefulStop(Callback):
    """On SIGINT/SIGTERM: finish the current batch, save ``last.ckpt``, stop training.

    Parameters
    ----------
    checkpoint_path : Path
        Where the interrupt checkpoint goes (the ``last.ckpt`` that ``--resume last`` reads).
    """

    signals = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, checkpoint_path: Path):
        self.checkpoint_path = Path(checkpoint_path)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._request_stop)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.received is not None and not trainer.should_stop:
            trainer.save_checkpoint(self.checkpoint_path)
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def interrupted(self) -> bool:
        return self.received is not None
