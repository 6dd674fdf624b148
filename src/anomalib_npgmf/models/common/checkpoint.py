"""Checkpoints both models write and read: a version stamp checked on load, atomic writes, the final state saved.

Why a version check: a checkpoint written by a newer (or incompatible older) anomalib-npgmf otherwise fails deep
inside ``load_state_dict`` with a list of missing tensors, or worse loads and scores differently. We refuse it up
front with both versions named.

Why atomic writes: Lightning's ``TorchCheckpointIO`` (and anomalib's ``AnomalibCheckpointIO``, which ``Engine``
installs and which only changes loading) writes through an fsspec transaction whose temporary file lives
in the system temp folder and is *moved* into place (a copy when ``/tmp`` is another file system) without ``fsync``;
a kill at the wrong moment leaves a truncated ``model.ckpt`` where the previous good one was. Our writer puts the
temporary file beside the target, flushes it to disk and renames it over the target with ``os.replace``.
"""

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from anomalib.engine.plugins import AnomalibCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from packaging.version import InvalidVersion, Version

from anomalib_npgmf.utils import atomic_write

logger = logging.getLogger(__name__)

VERSION_KEY = "anomalib_npgmf_version"
# Oldest package version whose checkpoints this one still reads (raise it when a change breaks old checkpoints).
OLDEST_COMPATIBLE_VERSION = "0.1.0"
PARTIAL_SUFFIX = ".partial"


class CheckpointVersionError(ValueError):
    """A checkpoint written by an anomalib-npgmf version this one cannot read."""


def _installed_version() -> str:
    from anomalib_npgmf import __version__

    return __version__


def stamp_version(checkpoint: dict[str, Any]) -> None:
    """Record the installed package version in ``checkpoint`` (call from ``on_save_checkpoint``)."""
    checkpoint[VERSION_KEY] = _installed_version()


def check_version(checkpoint: dict[str, Any], model_name: str, installed: str | None = None) -> None:
    """Refuse a checkpoint from a newer major/minor or from before :data:`OLDEST_COMPATIBLE_VERSION`.

    Older compatible checkpoints load; one without a stamp (written before stamping existed, or by hand) loads with a
    warning, since its tensors are still checked by ``load_state_dict``.
    """
    installed = installed or _installed_version()
    stored = checkpoint.get(VERSION_KEY)
    if stored is None:
        logger.warning("%s checkpoint has no %s entry; loading it as a pre-release checkpoint", model_name, VERSION_KEY)
        return
    try:
        stored_version = Version(str(stored))
    except InvalidVersion as error:
        msg = f"{model_name} checkpoint has an unreadable {VERSION_KEY} {stored!r}; expected a version like '0.1.0'"
        raise CheckpointVersionError(msg) from error
    current = Version(installed)
    if stored_version.release[:2] > current.release[:2]:
        msg = (
            f"{model_name} checkpoint was written by anomalib-npgmf {stored}, newer than the installed {installed}: "
            f"upgrade anomalib-npgmf to >= {stored_version.major}.{stored_version.minor} to load it"
        )
        raise CheckpointVersionError(msg)
    if stored_version < Version(OLDEST_COMPATIBLE_VERSION):
        msg = (
            f"{model_name} checkpoint was written by anomalib-npgmf {stored}; the installed {installed} reads "
            f"checkpoints from {OLDEST_COMPATIBLE_VERSION} on: retrain, or load it with anomalib-npgmf {stored}"
        )
        raise CheckpointVersionError(msg)


class AtomicCheckpointIO(AnomalibCheckpointIO):
    """anomalib's checkpoint IO (safe-globals loading) writing local files via a flushed temp file + ``os.replace``.

    A kill leaves either the previous checkpoint or the new one, plus at most a hidden ``.*.partial`` file, never a
    truncated ``.ckpt``; the next successful save of the same checkpoint removes such leftovers (those older than
    its own start, so a concurrent writer's file is never touched). Remote paths (``s3://`` ...) keep Lightning's own
    writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Serialise ``checkpoint`` to ``path`` atomically."""
        protocol = get_filesystem(path).protocol
        if storage_options is not None or "file" not in (protocol if isinstance(protocol, tuple) else (protocol,)):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        started = time.time()
        with atomic_write(path, suffix=PARTIAL_SUFFIX) as temporary, temporary.open("wb") as stream:
            torch.save(checkpoint, stream)
            stream.flush()
            os.fsync(stream.fileno())
        _fsync_folder(Path(path).parent)
        _remove_stale_partials(Path(path), started)


def _remove_stale_partials(path: Path, before: float) -> None:
    """Delete temp files of earlier, killed saves of ``path`` (best effort)."""
    for leftover in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        try:
            if leftover.stat().st_mtime < before:
                leftover.unlink()
        except OSError:
            pass


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system lets a folder be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


class FinalCheckpoint(Callback):
    """At the end of fitting, calibrate the final weights (if the last validation did not) and checkpoint them.

    Why: anomalib's ``ModelCheckpoint`` (no monitor) saves at the end of every training epoch only when validation
    runs every epoch; otherwise it saves at the end of each validation. With ``check_val_every_n_epoch: 10`` and
    ``max_epochs: 15`` the checkpoint holds epoch 10's weights (and, for Npgmf, normalisation fitted on them); with
    ``max_epochs`` below 10 none is written at all. Here the model's ``calibrate_final_weights()`` (if it has one)
    fits on the final weights, then every ``ModelCheckpoint`` saves through its own logic (file name, top-k, last),
    unless it already saved at this step. Monitored checkpoints keep their best-by-metric choice (the final state
    has no new metric); their ``save_last`` copy is written.
    """

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Calibrate, then save the final state once per checkpoint callback (all ranks: saving is collective)."""
        calibrate = getattr(pl_module, "calibrate_final_weights", None)
        if callable(calibrate):
            calibrate()
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or callback._should_skip_saving_checkpoint(trainer):
                continue
            candidates = callback._monitor_candidates(trainer)
            if callback.monitor is None:
                callback._save_topk_checkpoint(trainer, candidates)
            callback._save_last_checkpoint(trainer, candidates)


class AtomicCheckpointing(Callback):
    """Swap the trainer's stock checkpoint IO for :class:`AtomicCheckpointIO` (our models attach this callback).

    A callback, so that it works with ``anomalib train`` and ``Engine`` without the user passing a plugin, and keeps
    the user's ``ModelCheckpoint`` settings. Only Lightning's ``TorchCheckpointIO`` and anomalib's
    ``AnomalibCheckpointIO`` are replaced (keeping anomalib's safe globals); a custom IO the user chose is left alone.

    Also: Lightning stops a run on SIGTERM with a ``SystemExit`` that has no code, so ``anomalib fit`` exits 0 as if
    it had finished; we give it the shell's code for SIGTERM (143) so a pipeline sees the run was interrupted.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Install the atomic writer before any checkpoint can be saved."""
        del pl_module, stage
        strategy = trainer.strategy
        current = strategy.checkpoint_io
        if type(current) in (TorchCheckpointIO, AnomalibCheckpointIO):
            strategy.checkpoint_io = AtomicCheckpointIO(getattr(current, "extra_safe_globals", None))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """A SIGTERM-stopped run exits 143 (128 + SIGTERM), not 0."""
        del trainer, pl_module
        if isinstance(exception, SIGTERMException) and exception.code is None:
            exception.code = 128 + signal.SIGTERM


class VersionedCheckpoints:
    """Mix into a model (before ``AnomalibModule``): checkpoints carry the package version, and a checkpoint of an
    incompatible version is refused, naming both versions, before any tensor is loaded."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the package version, so later versions can refuse or convert old checkpoints clearly."""
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        stamp_version(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of an incompatible package version before its tensors are loaded."""
        check_version(checkpoint, type(self).__name__)
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]


def plugin_callbacks(module: LightningModule, per_category: bool) -> list[Callback]:
    """What both models add to anomalib's component callbacks: atomic checkpoint writes, the final weights always
    (calibrated and) checkpointed, the per-category image AUROC table of test runs when ``per_category``, and the
    datamodule's own test report (our LOCO datamodules' ``test_report()``: the logical / structural table) when
    ``module`` is attached to a trainer that has a datamodule."""
    callbacks: list[Callback] = [AtomicCheckpointing(), FinalCheckpoint()]
    if per_category:
        from anomalib_npgmf.metrics.per_category import PerCategoryImageAUROC

        callbacks.append(PerCategoryImageAUROC())
    test_report = getattr(getattr(module._trainer, "datamodule", None), "test_report", None)
    report = test_report() if callable(test_report) else None
    if report is not None:
        callbacks.append(report)
    return callbacks
