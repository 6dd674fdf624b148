"""Per-category image AUROC of one test run over several categories, and their mean (the multi-class table).

anomalib's evaluator pools all test images into one AUROC. Papers on unified (multi-class) models report one AUROC per
category and the mean over categories; this callback adds that table to any model's ``anomalib test``. It is DDP-safe:
scores are gathered from all ranks and de-duplicated by image path before any AUROC is computed.
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from anomalib_npgmf.utils import atomic_write
from anomalib_npgmf.utils.distributed import gather_unique_by_key

from .functional import rank_auroc

logger = logging.getLogger(__name__)

MEAN_ROW = "mean"
CSV_NAME = "per_category_image_auroc.csv"


def category_from_path(image_path: str | Path) -> str:
    """Category folder of an MVTec-style path ``.../<category>/test/<defect>/<image>`` (the folder above ``test``)."""
    parts = Path(image_path).parts
    for index in range(len(parts) - 2, 0, -1):
        if parts[index] in {"test", "train", "validation"}:
            return parts[index - 1]
    msg = f"cannot tell the category of '{image_path}': expected '<category>/test/...' in the path"
    raise ValueError(msg)


def per_category_auroc(categories: Sequence[str], scores: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """Table of image AUROC per category (rows sorted by name) plus a ``mean`` row over the defined ones.

    A category whose test images are all normal or all anomalous has no AUROC (NaN) and is left out of the mean.
    """
    rows = []
    names = list(categories)
    for name in sorted(set(names)):
        selected = torch.tensor([category == name for category in names], dtype=torch.bool)
        cat_scores, cat_labels = scores[selected].double(), labels[selected].long()
        anomalous = int(cat_labels.sum())
        normal = int(cat_labels.numel()) - anomalous
        value = rank_auroc(cat_scores, cat_labels) if anomalous and normal else float("nan")
        rows.append({"category": name, "image_AUROC": value, "n_normal": normal, "n_anomalous": anomalous})
    table = pd.DataFrame(rows, columns=["category", "image_AUROC", "n_normal", "n_anomalous"])
    mean = {
        "category": MEAN_ROW,
        "image_AUROC": float(table["image_AUROC"].mean()) if len(table) else float("nan"),
        "n_normal": int(table["n_normal"].sum()),
        "n_anomalous": int(table["n_anomalous"].sum()),
    }
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


class PerCategoryImageAUROC(Callback):
    """Collect test scores per category; at the end log ``image_AUROC/<category>`` and ``image_AUROC/mean``.

    Args:
        category_of: Maps an image path to its category. Default: the datamodule's ``category_of`` if it has one
            (``MultiCategory``), else the folder above ``test`` in the path.
        output_file: Where rank 0 writes the table as CSV; relative paths are under the trainer's
            ``default_root_dir``. ``None`` writes nothing.
    """

    def __init__(self, category_of: Callable[[str], str] | None = None, output_file: str | None = CSV_NAME) -> None:
        super().__init__()
        self.category_of = category_of
        self.output_file = output_file
        self.table: pd.DataFrame | None = None
        self._resolver: Callable[[str], str] = category_from_path
        self._paths: list[str] = []
        self._values: list[torch.Tensor] = []
        self._names: list[str] = []

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Pick the category resolver and the rank-independent list of category names."""
        del pl_module
        datamodule = getattr(trainer, "datamodule", None)
        self._resolver = self.category_of or getattr(datamodule, "category_of", None) or category_from_path
        self._names = _category_names(datamodule, self._resolver)
        self._paths, self._values = [], []

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,  # anomalib returns the updated batch
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Remember each image's path, score and label."""
        del trainer, pl_module, batch_idx, dataloader_idx
        result = outputs if getattr(outputs, "pred_score", None) is not None else batch
        if result.image_path is None or result.gt_label is None or result.pred_score is None:
            return
        scores = torch.as_tensor(result.pred_score).detach().float().reshape(-1).cpu()
        labels = torch.as_tensor(result.gt_label).detach().float().reshape(-1).cpu()
        for path, score, label in zip(result.image_path, scores, labels, strict=True):
            category = self._resolver(str(path))
            if category not in self._names:  # unknown to the datamodule's list: keep it, rank 0 warns below
                self._names.append(category)
            self._paths.append(str(path))
            self._values.append(torch.stack([score, label, torch.tensor(float(self._names.index(category)))]))

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Gather over ranks, compute the table, log it and (rank 0) write it."""
        gathered = gather_unique_by_key(self._paths, self._values)
        if not gathered:
            logger.warning("PerCategoryImageAUROC: no test image had a path, label and score; no table.")
            return
        values = torch.stack(gathered)
        categories = [self._names[int(index)] for index in values[:, 2].tolist()]
        self.table = per_category_auroc(categories, values[:, 0], values[:, 1])
        for row in self.table.itertuples(index=False):
            if row.image_AUROC == row.image_AUROC:  # skip NaN
                pl_module.log(f"image_AUROC/{row.category}", float(row.image_AUROC), sync_dist=False)
        rank_zero_info("Per-category image AUROC:\n" + self.table.to_string(index=False, float_format="%.4f"))
        if self.output_file and trainer.is_global_zero:
            path = Path(self.output_file)
            path = path if path.is_absolute() else Path(trainer.default_root_dir) / path
            with atomic_write(path) as temporary:
                self.table.to_csv(temporary, index=False, float_format="%.6f")


def _category_names(datamodule: object, resolver: Callable[[str], str]) -> list[str]:
    """Sorted category names known on every rank: the datamodule's list, else those of its test set's paths."""
    names = getattr(datamodule, "categories", None)
    if names:
        return sorted(str(name) for name in names)
    samples = getattr(getattr(datamodule, "test_data", None), "samples", None)
    if samples is not None and "image_path" in getattr(samples, "columns", ()):
        return sorted({resolver(str(path)) for path in samples["image_path"]})
    category = getattr(datamodule, "category", None)
    return [str(category)] if category else []
