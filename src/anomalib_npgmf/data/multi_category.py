"""Several categories in one datamodule: what unified (one model for all categories) and few-shot training read.

anomalib trains one model per category and has no datamodule that pools categories. :class:`MultiCategory` reads any
number of category folders in the MVTec tree, which MVTec AD, MVTec LOCO and VisA (anomalib's prepared
``visa_pytorch`` folder) share (read by :func:`~anomalib_npgmf.data.folders.scan_category`).

Categories may lie under different roots (MVTec AD and LOCO together). anomalib's ``ImageBatch`` has no field for
the category, so it travels in the image path: :meth:`MultiCategory.category_of` maps a path back to its category
(the category's folder name).
"""

import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from anomalib.data import ImageItem
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from pandas import DataFrame
from torchvision.transforms.v2 import Transform

from .folders import scan_category
from .items import load_image_item, mask_paths_of

logger = logging.getLogger(__name__)

COLUMNS = ["path", "category", "split", "label", "image_path", "mask_path", "label_index"]


def check_has_train_and_test(rows: list[dict], category_root: Path, category: str) -> None:
    """Refuse a category without training or without test images, naming the empty folder."""
    for split_folder, split in (("train/good", Split.TRAIN.value), ("test", Split.TEST.value)):
        if not any(row["split"] == split for row in rows):
            msg = f"category {category}: {category_root / split_folder} holds no images"
            raise FileNotFoundError(msg)


def select_shots(rows: list[dict], n_shots: int, seed: int | None) -> list[dict]:
    """``n_shots`` training rows per category: the first ones in file order, or a seeded random choice.

    The choice for one category depends only on the seed and the category's name, not on the other categories.
    """
    selected: list[dict] = []
    for category in dict.fromkeys(row["category"] for row in rows):
        candidates = sorted((row for row in rows if row["category"] == category), key=lambda row: row["image_path"])
        if len(candidates) < n_shots:
            msg = f"n_shots={n_shots}, but category {category} has only {len(candidates)} normal training images"
            raise ValueError(msg)
        if seed is None:
            chosen = range(n_shots)
        else:
            rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
            chosen = sorted(rng.choice(len(candidates), size=n_shots, replace=False).tolist())
        selected.extend(candidates[index] for index in chosen)
    return selected


class MultiCategoryDataset(AnomalibDataset):
    """Samples of several categories (a ``category`` column besides anomalib's); items are anomalib ``ImageItem``.

    Args:
        samples: Sample table with anomalib's columns plus ``category``; ``mask_path`` holds a list of files.
        augmentations: torchvision v2 transform applied to image and mask together.
    """

    def __init__(self, samples: DataFrame, augmentations: Transform | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self.samples = samples

    @property
    def categories(self) -> list[str]:
        """Category names present in this dataset, sorted."""
        return sorted(set(self.samples["category"]))

    def __getitem__(self, index: int) -> ImageItem:
        """Image, union of its masks (segmentation data) and label."""
        sample = self.samples.iloc[index]
        return load_image_item(
            str(sample.image_path),
            mask_paths_of(sample.mask_path),
            int(sample.label_index),
            self.augmentations,
            with_mask=self.samples.attrs.get("task") == "segmentation",
        )


def _table(rows: list[dict], task: str) -> DataFrame:
    samples = DataFrame(rows, columns=COLUMNS)
    samples.attrs["task"] = task
    return samples


class MultiCategory(AnomalibDataModule):
    """One datamodule over several categories (MVTec AD, MVTec LOCO, VisA layouts, mixed roots allowed).

    Train, validation and test sets hold every category; :meth:`category_of` tells an image's category and
    :attr:`categories` lists them (the per-category AUROC callback reads both).

    Validation: by default (``val_split_mode=None``) each category's own ``validation`` folder when every category
    has one (MVTec LOCO: normal images only, as anomalib's ``MVTecLOCO``: fine for early stopping and score
    normalisation, not for F1-adaptive thresholds), else the test set (``same_as_test``, anomalib's MVTec AD default;
    our models then fit their calibration on held-out training normals, never on it: ``models/common/calibration.py``).
    Any anomalib ``ValSplitMode`` can be passed instead.

    Args:
        root: Folder holding the categories. Optional when every entry of ``categories`` is a path.
        categories: Category folder names under ``root``, or paths to category folders (the name is the folder name).
            ``None``: every sub-folder of ``root`` that has a ``train`` folder.
        n_shots: Few-shot mode: train on ``n_shots`` normal images per category (the first ones in file order, or a
            random choice when ``seed`` is set). ``None`` uses all.
        train_batch_size, eval_batch_size, num_workers, train_augmentations, val_augmentations, test_augmentations,
        augmentations, test_split_mode, test_split_ratio, val_split_ratio, seed: As in anomalib's datamodules.
        val_split_mode: See "Validation" above.
        loco_report: At test time, when every category is in the MVTec LOCO layout (``defects_config.json``), our
            models attach :class:`~anomalib_npgmf.metrics.callback.PerCategoryLocoReport`: ``anomalib test`` writes
            the logical / structural table (image AUROC, AU-sPRO) per category and its mean over categories.
        fpr_limit: FPR integration limit of AU-sPRO in that table.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        categories: Sequence[str] | str | None = None,
        n_shots: int | None = None,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float | None = None,
        val_split_mode: ValSplitMode | str | None = None,
        val_split_ratio: float | None = None,
        seed: int | None = None,
        loco_report: bool = True,
        fpr_limit: float = 0.05,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            test_split_mode=test_split_mode,
            test_split_ratio=test_split_ratio,
            seed=seed,
        )
        if n_shots is not None and (isinstance(n_shots, bool) or not isinstance(n_shots, int) or n_shots < 1):
            msg = f"n_shots must be a positive integer or None, got {n_shots!r}"
            raise ValueError(msg)
        self.root = Path(root) if root is not None else None
        self.n_shots = n_shots
        self.loco_report = loco_report
        self.fpr_limit = fpr_limit
        self.val_split_mode_requested = ValSplitMode(val_split_mode) if val_split_mode is not None else None
        self.category_roots = self._resolve_categories(categories)
        self.categories = list(self.category_roots)
        joined = "+".join(self.categories)
        self.category = joined if len(joined) <= 64 else f"{len(self.categories)}_categories"
        self._category_by_path: dict[str, str] = {}

    def _resolve_categories(self, categories: Sequence[str] | str | None) -> dict[str, Path]:
        """Category name -> folder, checked to exist."""
        if isinstance(categories, str):
            categories = [categories]
        if categories is None:
            if self.root is None or not self.root.is_dir():
                msg = f"MultiCategory: root folder {self.root} does not exist (check data.root)"
                raise FileNotFoundError(msg)
            found = sorted(p for p in self.root.iterdir() if (p / "train").is_dir() and not p.name.startswith("."))
            if not found:
                msg = f"MultiCategory: no category folder (one with a 'train' folder) under {self.root}"
                raise FileNotFoundError(msg)
            return {p.name: p for p in found}
        if not categories:
            msg = "MultiCategory: categories is empty; give category names (or None for every folder under root)"
            raise ValueError(msg)
        resolved: dict[str, Path] = {}
        for entry in categories:
            path = Path(entry)
            if not path.is_absolute() and len(path.parts) == 1:
                if self.root is None:
                    msg = f"MultiCategory: category '{entry}' is a name, so data.root must be set (or give a path)"
                    raise ValueError(msg)
                path = self.root / path
            if not path.is_dir():
                msg = f"MultiCategory: category folder {path} does not exist (check data.root and data.categories)"
                raise FileNotFoundError(msg)
            if path.name in resolved:
                msg = f"MultiCategory: two categories are named '{path.name}' ({resolved[path.name]} and {path})"
                raise ValueError(msg)
            resolved[path.name] = path
        return resolved

    @property
    def is_loco(self) -> bool:
        """Whether every category is in the MVTec LOCO layout (has ``defects_config.json``)."""
        return all((folder / "defects_config.json").is_file() for folder in self.category_roots.values())

    def test_report(self) -> Any:
        """The per-category LOCO table callback of a test run (``None`` unless every category is LOCO-layout and
        ``loco_report``); our models add it in ``configure_callbacks``, see ``MVTecLOCORegions.test_report``."""
        if not self.loco_report or not self.is_loco:
            return None
        from anomalib_npgmf.metrics.callback import PerCategoryLocoReport

        return PerCategoryLocoReport(self.categories, self.category_of, self.fpr_limit)

    def _setup(self, _stage: str | None = None) -> None:
        rows = []
        for name, folder in self.category_roots.items():
            category_rows = scan_category(folder, name)
            check_has_train_and_test(category_rows, folder, name)
            rows += category_rows
        self._category_by_path = {row["image_path"]: row["category"] for row in rows}
        anomalous = [row for row in rows if row["label_index"] == LabelName.ABNORMAL]
        with_masks = [row for row in anomalous if row["mask_path"]]
        task = "segmentation" if anomalous and len(with_masks) == len(anomalous) else "classification"
        if with_masks and task == "classification":
            logger.warning(
                "MultiCategory: some categories have no ground_truth folder; masks of all categories are ignored "
                "(image-level labels only)"
            )
        train = [row for row in rows if row["split"] == Split.TRAIN.value]
        if self.n_shots is not None:
            train = select_shots(train, self.n_shots, self.seed)
        self.train_data = MultiCategoryDataset(_table(train, task))
        self.test_data = MultiCategoryDataset(_table([row for row in rows if row["split"] == Split.TEST.value], task))
        validation = [row for row in rows if row["split"] == Split.VAL.value]
        without_validation = sorted(set(self.categories) - {row["category"] for row in validation})
        if self.val_split_mode_requested is None:
            self.val_split_mode = ValSplitMode.SAME_AS_TEST if without_validation else ValSplitMode.FROM_DIR
        if self.val_split_mode == ValSplitMode.FROM_DIR:
            if without_validation:
                msg = (
                    f"val_split_mode=from_dir, but categories {', '.join(without_validation)} have no "
                    "validation/good images; use another val_split_mode (or leave it unset)"
                )
                raise FileNotFoundError(msg)
            self.val_data = MultiCategoryDataset(_table(validation, task))

    @property
    def name(self) -> str:
        """The folder that holds all the categories (their common parent), e.g. ``MVTec_LOCO``.

        anomalib names the run folder ``<model>/<name>/<category>`` and saves test images under the part of their path
        after the folder called ``name``: with the common parent, that part starts with the category, so images of
        different categories that share a file name (``test/good/000.png``) do not overwrite each other.
        """
        folders = [str(folder.absolute()) for folder in self.category_roots.values()]
        common = Path(os.path.commonpath(folders)) if len(folders) > 1 else Path(folders[0]).parent
        return common.name or self.__class__.__name__

    def category_of(self, image_path: str | Path) -> str:
        """The category of an image: the category folder it lies in."""
        category = self._category_by_path.get(str(image_path))
        if category is not None:
            return category
        path = Path(image_path).absolute()
        for name, folder in self.category_roots.items():
            if path.is_relative_to(folder.absolute()):
                return name
        msg = f"{image_path} lies in none of the categories {', '.join(self.categories)}"
        raise ValueError(msg)
