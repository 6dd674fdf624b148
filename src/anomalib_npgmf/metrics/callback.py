"""Print and save the LOCO table at the end of ``anomalib test``, for any anomalib model.

Our ``MVTecLOCO`` datamodule attaches this callback when a test starts (``loco_report=True``), so
``anomalib test --model Patchcore --data anomalib_npgmf.data.MVTecLOCO ...`` prints the logical / structural table
and writes ``loco_report.{json,csv,md}`` into the run folder (``trainer.default_root_dir``, where anomalib also puts
the run's ``images/`` and ``weights/``).
"""

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from .loco import LocoResults, format_table, write_report

logger = logging.getLogger(__name__)


class LocoReportCallback(Callback):
    """Collect test predictions, then compute, print and write the LOCO table."""

    def __init__(self, fpr_limit: float = 0.05) -> None:
        self.fpr_limit = fpr_limit
        self.results = LocoResults()
        self.table: dict[str, dict[str, float]] | None = None

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        self.results = LocoResults()

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, pl_module, batch_idx, dataloader_idx
        predictions = outputs if outputs is not None else batch
        if getattr(predictions, "anomaly_map", None) is None or getattr(predictions, "pred_score", None) is None:
            return
        self.results.add(predictions.image_path, predictions.pred_score, predictions.anomaly_map)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module
        if not self.results.image_paths or trainer.global_rank != 0:
            return
        self.table = self.results.table(self.fpr_limit)
        folder = Path(trainer.default_root_dir)
        write_report(self.table, folder, self.fpr_limit)
        print(f"\nMVTec LOCO results ({len(self.results.image_paths)} test images):")
        print(format_table(self.table, self.fpr_limit))
        print(f"Written: {folder / 'loco_report.json'} (.csv, .md)\n")
