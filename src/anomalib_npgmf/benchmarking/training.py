"""Training for every benchmark: anomalib's ``Engine.fit`` on CPU, quiet, timed (per epoch when asked)."""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .measure import BackgroundLoad
from .records import TrainTiming


def fit(model: Any, datamodule: Any, epochs: int, folder: Path, callbacks: Sequence[Any] = ()) -> tuple[Any, float]:
    """Fit with anomalib's Engine (one CPU device, no logger, no progress bar); the engine and the seconds."""
    from anomalib.engine import Engine

    engine = Engine(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=folder,
        enable_progress_bar=False,
        callbacks=list(callbacks),
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    return engine, time.perf_counter() - start


def timed_fit(name: str, model: Any, datamodule: Any, epochs: int, folder: Path) -> tuple[Any, TrainTiming]:
    """:func:`fit`, plus the seconds of each epoch's training batches and the background load meanwhile."""
    timing = TrainTiming(name)
    with BackgroundLoad() as background:
        engine, timing.fit_seconds = fit(model, datamodule, epochs, folder, [_epoch_timer(timing)])
    timing.background_cores = background.cores
    return engine, timing


def _epoch_timer(timing: TrainTiming) -> Any:
    """Lightning callback: from the start of each training epoch to its last training batch."""
    from lightning.pytorch import Callback

    class EpochTimer(Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            del trainer, pl_module
            self.start = self.last = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            del trainer, pl_module, outputs, batch_idx
            self.last = time.perf_counter()
            timing.images += int(batch.image.shape[0])

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            del trainer, pl_module
            timing.epoch_seconds.append(self.last - self.start)

    return EpochTimer()
