"""MVTec LOCO AD datamodule that works, plus each image's anomaly type and defect regions.

anomalib 2.7.0's ``MVTecLOCO`` crashes on pandas 3 (``make_dataset`` assigns lists of mask paths into a column pandas
3 types as ``str``: ``TypeError: Invalid value ... for dtype 'str'``), and its items drop the per-defect masks and the
logical/structural distinction the LOCO metrics need. This module keeps anomalib's datamodule and item types and
replaces only the sample table (built with plain Python, pandas 2 and 3 alike).

The metrics read regions from the ground-truth files themselves (:func:`load_defect_regions`, keyed by image path),
so batches stay anomalib's ``ImageBatch`` and the metrics also work with anomalib's own datamodule and any model.
"""

from pathlib import Path

from anomalib.data import ImageItem
from anomalib.data.datamodules.image.mvtec_loco import MVTecLOCO as AnomalibMVTecLOCO
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.utils import Split, TestSplitMode, ValSplitMode
from pandas import DataFrame
from torchvision.transforms.v2 import Transform

from anomalib_npgmf.ground_truth import DefectRegion, anomaly_type_of, load_defect_regions
from anomalib_npgmf.metrics.callback import LocoReportCallback

from .folders import scan_category
from .items import load_image_item, mask_paths_of

__all__ = ["DefectRegion", "MVTecLOCORegions", "MVTecLOCORegionsDataset", "anomaly_type_of", "load_defect_regions"]


def make_loco_samples(category_root: Path, split: str | Split | None = None) -> DataFrame:
    """Sample table of one LOCO category: image path, split, label, mask paths (a list per anomalous image)."""
    if not category_root.parent.is_dir():
        msg = f"MVTec LOCO root folder {category_root.parent} does not exist (check data.root)"
        raise FileNotFoundError(msg)
    if not category_root.is_dir():
        found = sorted(p.name for p in category_root.parent.iterdir() if p.is_dir() and not p.name.startswith("."))
        msg = (
            f"MVTec LOCO category folder {category_root} does not exist (check data.root and data.category; "
            f"categories found there: {', '.join(found) or 'none'})"
        )
        raise FileNotFoundError(msg)
    rows = [
        {**row, "mask_path": row["mask_path"] or ""}  # anomalib's LOCO table: "" for a normal image
        for row in scan_category(category_root, category_root.name, require_masks=True)
    ]
    samples = DataFrame(rows, columns=["path", "split", "label", "image_path", "mask_path", "label_index"])
    if split is not None:
        split_value = split.value if isinstance(split, Split) else str(split)
        samples = samples[samples.split == split_value].reset_index(drop=True)
        if split_value == Split.TRAIN.value and samples.empty:
            msg = f"the training folder {category_root / 'train' / 'good'} holds no images"
            raise FileNotFoundError(msg)
    has_masks = any(isinstance(m, list) for m in samples["mask_path"])
    samples.attrs["task"] = "segmentation" if has_masks else "classification"
    return samples


class MVTecLOCORegionsDataset(AnomalibDataset):
    """anomalib's LOCO dataset (same arguments and attributes) with a pandas-3-safe sample table; items unchanged
    (anomalib ``ImageItem``).

    A direct ``AnomalibDataset`` subclass: anomalib's ``MVTecLOCODataset.__init__`` builds the table that crashes on
    pandas 3, so inheriting from it would mean skipping its ``__init__``.
    """

    def __init__(
        self,
        root: Path | str,
        category: str,
        augmentations: Transform | None = None,
        split: str | Split | None = None,
    ) -> None:
        super().__init__(augmentations=augmentations)
        self.root_category = Path(root) / category
        self.category = category
        self.split = split
        self.samples = make_loco_samples(self.root_category, split)

    def __getitem__(self, index: int) -> ImageItem:
        """anomalib's LOCO item (gt mask = union of the image's regions), refusing masks of another size."""
        sample = self.samples.iloc[index]
        return load_image_item(
            str(sample.image_path), mask_paths_of(sample.mask_path), int(sample.label_index), self.augmentations
        )

    def anomaly_type(self, index: int) -> str:
        """``"good"``, ``"logical"`` or ``"structural"`` of sample ``index``."""
        return anomaly_type_of(self.samples.iloc[index].image_path)

    def defect_regions(self, index: int) -> list["DefectRegion"]:
        """The defect regions of sample ``index`` at ground-truth resolution (``[]`` for good images)."""
        return load_defect_regions(self.samples.iloc[index].image_path, self.root_category)


class MVTecLOCORegions(AnomalibMVTecLOCO):
    """anomalib's ``MVTecLOCO`` datamodule (same arguments), working on pandas 2 and 3.

    Named apart from anomalib's class on purpose: jsonargparse resolves ``--data MVTecLOCO`` over every imported
    subclass, so a second class of that name would break anomalib's own short name for every user.

    Validation holds LOCO's normal-only ``validation`` split, as in anomalib: thresholds fitted on it (anomalib's
    F1-adaptive default) are not meaningful; use AUROC / AU-sPRO (see the README, "Thresholds").

    Args:
        loco_report: At test time, our models attach :class:`~anomalib_npgmf.metrics.callback.LocoReportCallback`,
            so that ``anomalib test`` prints and saves the logical / structural table (image AUROC, AU-sPRO).
        fpr_limit: FPR integration limit of AU-sPRO in that table.
        root, category, train_batch_size, eval_batch_size, num_workers, train_augmentations, val_augmentations,
        test_augmentations, augmentations, test_split_mode, val_split_mode, test_split_ratio, val_split_ratio,
        seed: As in anomalib's ``MVTecLOCO``.
    """

    def __init__(
        self,
        root: Path | str | None = "./datasets/MVTec_LOCO",
        category: str = "breakfast_box",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        val_split_mode: ValSplitMode | str = ValSplitMode.FROM_DIR,
        test_split_ratio: float | None = None,
        val_split_ratio: float | None = None,
        seed: int | None = None,
        loco_report: bool = True,
        fpr_limit: float = 0.05,
    ) -> None:
        super().__init__(
            root=root,
            category=category,
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            test_split_mode=test_split_mode,
            val_split_mode=val_split_mode,
            test_split_ratio=test_split_ratio,
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
        self.loco_report = loco_report
        self.fpr_limit = fpr_limit

    def test_report(self) -> LocoReportCallback | None:
        """The LOCO table callback of a test run on this data (``None`` with ``loco_report=False``).

        Our models add it from their ``configure_callbacks``; with another model, list
        ``anomalib_npgmf.metrics.callback.LocoReportCallback`` under ``trainer.callbacks`` in the config.
        """
        return LocoReportCallback(self.fpr_limit) if self.loco_report else None

    def _setup(self, _stage: str | None = None) -> None:
        self.train_data = MVTecLOCORegionsDataset(split=Split.TRAIN, root=self.root, category=self.category)
        self.val_data = MVTecLOCORegionsDataset(split=Split.VAL, root=self.root, category=self.category)
        self.test_data = MVTecLOCORegionsDataset(split=Split.TEST, root=self.root, category=self.category)
