"""Print and save the LOCO table at the end of ``anomalib test``, for any anomalib model.

Our ``MVTecLOCORegions`` datamodule attaches this callback when a test starts (``loco_report=True``), so
``anomalib test --model Patchcore --data anomalib_npgmf.data.MVTecLOCORegions ...`` prints the logical / structural
table and writes ``loco_report.{json,csv,md}`` into the run folder (``trainer.default_root_dir``, where anomalib also
puts the run's ``images/`` and ``weights/``).
"""

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from .loco import TYPES, format_table, with_mean, write_report
from .streaming import loco_test_metrics

logger = logging.getLogger(__name__)


class LocoReportCallback(Callback):
    """Stream test predictions into the LOCO metrics (no maps kept), then print and write the table.

    The metrics are torchmetrics with summed states, reduced over DDP ranks when computed.
    """

    def __init__(self, fpr_limit: float = 0.05) -> None:
        self.fpr_limit = fpr_limit
        self.metrics = loco_test_metrics(fpr_limit)
        self.images = 0
        self.table: dict[str, dict[str, float]] | None = None

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        for metric in self.metrics:
            metric.reset()
        self.images = 0

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
        for metric in self.metrics:
            metric.to("cpu").update(predictions)
        self.images += len(predictions.image_path)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module
        if not self.images:
            return
        values = {metric.name: float(metric.compute()) for metric in self.metrics}  # collective over DDP ranks
        table = {
            kind: {"image_AUROC": values[f"image_AUROC_{kind}"], "AU-sPRO": values[f"AU-sPRO_{kind}"]} for kind in TYPES
        }
        self.table = with_mean(table)
        if trainer.global_rank != 0:
            return
        folder = Path(trainer.default_root_dir)
        write_report(self.table, folder, self.fpr_limit)
        print(f"\nMVTec LOCO results ({self.images} test images on this rank):")
        print(format_table(self.table, self.fpr_limit))
        print(f"Written: {folder / 'loco_report.json'} (.csv, .md)\n")
