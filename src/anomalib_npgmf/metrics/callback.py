"""Print and save the LOCO table at the end of ``anomalib test``, for any anomalib model (one category, or per
category over several).

Our models add it from ``configure_callbacks`` when the datamodule is our ``MVTecLOCORegions``
(``loco_report=True``); anomalib's own models get it when the config or command line lists it:
``anomalib test --model Patchcore --data anomalib_npgmf.data.MVTecLOCORegions ... --trainer.callbacks
anomalib_npgmf.metrics.callback.LocoReportCallback``. It prints the logical / structural table and writes
``loco_report.{json,csv,md}`` into the run folder (``trainer.default_root_dir``, where anomalib also puts the run's
``images/`` and ``weights/``). Over LOCO categories in ``MultiCategory`` our models add :class:`PerCategoryLocoReport`
instead: the same table per category plus the mean over categories (``loco_report_per_category.{json,csv,md}``).
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from .loco import (
    PER_CATEGORY_STEM,
    TYPES,
    format_per_category_table,
    format_table,
    per_category_table,
    with_mean,
    write_per_category_report,
    write_report,
)
from .streaming import PathSplitAUROC, PathSPRO, loco_test_metrics

logger = logging.getLogger(__name__)


class _StreamingTestReport(Callback):
    """Reset the metrics when a test starts, feed each test batch's predictions to :meth:`update`."""

    images = 0

    def metrics_to_reset(self) -> list[Any]:
        """Every metric of the report."""
        raise NotImplementedError

    def update(self, predictions: Any) -> None:
        """Fold one batch of predictions (anomalib's ``ImageBatch``) into the metrics."""
        raise NotImplementedError

    def publish(
        self, trainer: Trainer, title: str, write: Callable, render: Callable, stem: str = PER_CATEGORY_STEM
    ) -> None:
        """Rank 0 writes ``<stem>.{json,csv,md}`` into the run folder and prints the table."""
        if trainer.global_rank != 0:
            return
        folder = Path(trainer.default_root_dir)
        write(self.table, folder, self.fpr_limit)
        print(f"\n{title} ({self.images} test images on this rank):")
        print(render(self.table, self.fpr_limit))
        print(f"Written: {folder / (stem + '.json')} (.csv, .md)\n")

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module
        for metric in self.metrics_to_reset():
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
        self.update(outputs if outputs is not None else batch)


class LocoReportCallback(_StreamingTestReport):
    """Stream test predictions into the LOCO metrics (no maps kept), then print and write the table.

    The metrics are torchmetrics with summed states, reduced over DDP ranks when computed.
    """

    def __init__(self, fpr_limit: float = 0.05) -> None:
        self.fpr_limit = fpr_limit
        self.metrics = loco_test_metrics(fpr_limit)
        self.images = 0
        self.table: dict[str, dict[str, float]] | None = None

    def metrics_to_reset(self) -> list[Any]:
        return list(self.metrics)

    def update(self, predictions: Any) -> None:
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
        self.publish(trainer, "MVTec LOCO results", write_report, format_table, "loco_report")


class PerCategoryLocoReport(_StreamingTestReport):
    """The LOCO table per category of a multi-category test run, and the mean over categories.

    Streams like :class:`LocoReportCallback`: per category and anomaly type, an image AUROC and an AU-sPRO metric
    (summed / concatenated states, reduced over DDP ranks; every rank holds every category's metrics, so the
    collective calls match). A cell that cannot be computed (e.g. a category without structural images) is NaN and
    left out of the mean.

    Args:
        categories: Category names (the datamodule's ``categories``).
        category_of: Image path -> category (the datamodule's ``category_of``).
        fpr_limit: FPR integration limit of AU-sPRO.
    """

    def __init__(self, categories: Sequence[str], category_of: Callable[[str], str], fpr_limit: float = 0.05) -> None:
        self.categories = sorted(str(name) for name in categories)
        self.category_of = category_of
        self.fpr_limit = fpr_limit
        self.metrics = {
            name: {kind: (PathSplitAUROC(kind), PathSPRO(kind, fpr_limit=fpr_limit)) for kind in TYPES}
            for name in self.categories
        }
        self.images = 0
        self.table: dict[str, dict[str, dict[str, float]]] | None = None

    def metrics_to_reset(self) -> list[Any]:
        return [metric for kinds in self.metrics.values() for pair in kinds.values() for metric in pair]

    def update(self, predictions: Any) -> None:
        maps, scores = getattr(predictions, "anomaly_map", None), getattr(predictions, "pred_score", None)
        if maps is None or scores is None or predictions.image_path is None:
            return
        paths = [str(path) for path in predictions.image_path]
        scores = torch.as_tensor(scores).detach().reshape(-1).cpu()
        maps = torch.as_tensor(maps).detach().cpu()
        for name in self.categories:
            chosen = [index for index, path in enumerate(paths) if self.category_of(path) == name]
            if not chosen:
                continue
            selected = [paths[index] for index in chosen]
            for auroc, spro in self.metrics[name].values():
                auroc.update(scores[chosen], selected)
                spro.update(maps[chosen], selected)
        self.images += len(paths)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module
        if not self.images and trainer.world_size == 1:
            return
        tables = {}
        for name, kinds in self.metrics.items():  # every rank computes every cell: the reductions are collective
            tables[name] = with_mean({kind: _cell(auroc, spro) for kind, (auroc, spro) in kinds.items()})
        self.table = per_category_table(tables)
        self.publish(trainer, "MVTec LOCO results per category", write_per_category_report, format_per_category_table)


def _cell(auroc: PathSplitAUROC, spro: PathSPRO) -> dict[str, float]:
    """image AUROC and AU-sPRO of one category and anomaly type (NaN where the test set lacks the images)."""
    value = float(auroc.compute())
    try:
        area = float(spro.compute())
    except ValueError:  # no good image or no region of this type
        area = float("nan")
    return {"image_AUROC": value, "AU-sPRO": area}
