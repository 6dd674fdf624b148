"""MVTec LOCO AD datamodule that works, plus each image's anomaly type and defect regions.

anomalib 2.7.0's ``MVTecLOCO`` crashes on pandas 3 (``make_dataset`` assigns lists of mask paths into a column pandas
3 types as ``str``: ``TypeError: Invalid value ... for dtype 'str'``), and its items drop the per-defect masks and the
logical/structural distinction the LOCO metrics need. This module keeps anomalib's datamodule and item types and
replaces only the sample table (built with plain Python, pandas 2 and 3 alike).

The metrics read regions from the ground-truth files themselves (:func:`load_defect_regions`, keyed by image path),
so batches stay anomalib's ``ImageBatch`` and the metrics also work with anomalib's own datamodule and any model.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from anomalib.data import ImageItem
from anomalib.data.datamodules.image.mvtec_loco import MVTecLOCO as AnomalibMVTecLOCO
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.datasets.image.mvtec_loco import MVTecLOCODataset as AnomalibMVTecLOCODataset
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from pandas import DataFrame
from PIL import Image
from torchvision.transforms.v2 import Transform

from .items import load_image_item, mask_paths_of

ANOMALY_DIRS = {"good": "good", "logical_anomalies": "logical", "structural_anomalies": "structural"}
SPLIT_DIRS = {"train": Split.TRAIN.value, "validation": Split.VAL.value, "test": Split.TEST.value}
IMAGE_SUFFIXES = (".png", ".PNG")


@dataclass
class DefectRegion:
    """One ground-truth defect region of a LOCO test image (one ``ground_truth/.../NNN.png`` file)."""

    mask: np.ndarray  # bool (H, W) at the ground-truth resolution
    pixel_value: int
    defect_name: str
    saturation_area: float


def anomaly_type_of(image_path: str | Path) -> str:
    """``"good"``, ``"logical"`` or ``"structural"``, from the LOCO folder the image lies in."""
    folder = Path(image_path).parent.name
    if folder not in ANOMALY_DIRS:
        msg = (
            f"{image_path} is not in a MVTec LOCO label folder (expected one of {sorted(ANOMALY_DIRS)}, "
            f"found '{folder}')"
        )
        raise ValueError(msg)
    return ANOMALY_DIRS[folder]


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
    rows = []
    for split_dir, split_value in SPLIT_DIRS.items():
        for label_dir in sorted((category_root / split_dir).glob("*")):
            if not label_dir.is_dir():
                continue
            for image_path in sorted(p for p in label_dir.iterdir() if p.suffix in IMAGE_SUFFIXES):
                normal = label_dir.name == "good"
                masks: list[str] | str = ""
                if not normal:
                    mask_dir = category_root / "ground_truth" / label_dir.name / image_path.stem
                    masks = sorted(str(m) for m in mask_dir.glob("*.png"))
                    if not masks:
                        msg = f"no ground-truth masks for {image_path} (expected {mask_dir}/000.png)"
                        raise FileNotFoundError(msg)
                rows.append(
                    {
                        "path": str(category_root),
                        "split": split_value,
                        "label": label_dir.name,
                        "image_path": str(image_path),
                        "mask_path": masks,
                        "label_index": int(LabelName.NORMAL if normal else LabelName.ABNORMAL),
                    }
                )
    samples = DataFrame(rows, columns=["path", "split", "label", "image_path", "mask_path", "label_index"])
    if split is not None:
        split_value = split.value if isinstance(split, Split) else str(split)
        samples = samples[samples.split == split_value].reset_index(drop=True)
        if split_value == Split.TRAIN.value and samples.empty:
            msg = f"the training folder {category_root / 'train' / 'good'} holds no .png images"
            raise FileNotFoundError(msg)
    has_masks = any(isinstance(m, list) for m in samples["mask_path"])
    samples.attrs["task"] = "segmentation" if has_masks else "classification"
    return samples


class MVTecLOCORegionsDataset(AnomalibMVTecLOCODataset):
    """anomalib's LOCO dataset with a pandas-3-safe sample table (items unchanged: anomalib ``ImageItem``)."""

    def __init__(
        self,
        root: Path | str,
        category: str,
        augmentations: Transform | None = None,
        split: str | Split | None = None,
    ) -> None:
        AnomalibDataset.__init__(self, augmentations=augmentations)
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
        loco_report: At test time, attach :class:`~anomalib_npgmf.metrics.callback.LocoReportCallback` so that
            ``anomalib test`` prints and saves the logical / structural table (image AUROC, AU-sPRO).
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

    def setup(self, stage: str | None = None) -> None:
        """anomalib's set-up, plus the LOCO report callback when testing under a trainer."""
        super().setup(stage)
        trainer = getattr(self, "trainer", None)
        if not self.loco_report or trainer is None or stage not in {None, "test"}:
            return
        from anomalib_npgmf.metrics.callback import LocoReportCallback

        if not any(isinstance(callback, LocoReportCallback) for callback in trainer.callbacks):
            trainer.callbacks.append(LocoReportCallback(self.fpr_limit))

    def _setup(self, _stage: str | None = None) -> None:
        self.train_data = MVTecLOCORegionsDataset(split=Split.TRAIN, root=self.root, category=self.category)
        self.val_data = MVTecLOCORegionsDataset(split=Split.VAL, root=self.root, category=self.category)
        self.test_data = MVTecLOCORegionsDataset(split=Split.TEST, root=self.root, category=self.category)


@lru_cache(maxsize=64)
def _defects_config(config_path: str, modified: float) -> dict[int, dict]:
    """pixel value -> defect entry of one ``defects_config.json`` (cached per file version)."""
    del modified  # part of the cache key only
    path = Path(config_path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        msg = f"cannot read {path}: {error}"
        raise ValueError(msg) from error
    if not isinstance(entries, list):
        msg = f"{path} must hold a list of defect entries, found {type(entries).__name__}"
        raise ValueError(msg)
    table: dict[int, dict] = {}
    required = {
        "defect_name": str,
        "pixel_value": int,
        "saturation_threshold": (int, float),
        "relative_saturation": bool,
    }
    for index, entry in enumerate(entries):
        problems = [
            key
            for key, kind in required.items()
            if not isinstance(entry, dict)
            or not isinstance(entry.get(key), kind)
            or (kind is not bool and isinstance(entry.get(key), bool))  # JSON true is no number
        ]
        if problems:
            msg = f"{path}: entry {index} ({entry!r}) lacks or mistypes {', '.join(problems)}"
            raise ValueError(msg)
        threshold = entry["saturation_threshold"]
        if not threshold > 0 or (entry["relative_saturation"] and threshold > 1):  # `not >` also catches NaN
            msg = (
                f"{path}: entry {index} ({entry['defect_name']}) has saturation_threshold {threshold}; expected > 0 "
                "(and <= 1 when relative_saturation is true)"
            )
            raise ValueError(msg)
        if not 1 <= entry["pixel_value"] <= 255:
            value = entry["pixel_value"]
            msg = f"{path}: entry {index} ({entry['defect_name']}) has pixel_value {value}; expected 1-255"
            raise ValueError(msg)
        if entry["pixel_value"] in table:
            other = table[entry["pixel_value"]]["defect_name"]
            msg = f"{path}: entry {index} ({entry['defect_name']}) reuses pixel_value {entry['pixel_value']} of {other}"
            raise ValueError(msg)
        table[int(entry["pixel_value"])] = entry
    return table


def load_defect_regions(image_path: str | Path, dataset_root: str | Path | None = None) -> list[DefectRegion]:
    """The defect regions of a LOCO test image (``[]`` for a good image), read from ``ground_truth``.

    Saturation area per LOCO (Bergmann et al., IJCV 2022): ``threshold * region area`` when the defect type's
    saturation is relative, else ``min(threshold, region area)``.

    Args:
        image_path: ``<root>/<category>/test/<label>/<stem>.png``.
        dataset_root: The category folder, when the image does not lie inside it (e.g. a copy).
    """
    image_path = Path(image_path)
    anomaly = anomaly_type_of(image_path)
    if anomaly == "good":
        return []
    category_root = Path(dataset_root) if dataset_root is not None else image_path.parents[2]
    config_path = category_root / "defects_config.json"
    if not config_path.is_file():
        msg = f"{config_path} is missing (needed for the saturation areas of {image_path.name})"
        raise FileNotFoundError(msg)
    config = _defects_config(str(config_path), config_path.stat().st_mtime)
    mask_dir = category_root / "ground_truth" / image_path.parent.name / image_path.stem
    mask_paths = sorted(mask_dir.glob("*.png"))
    if not mask_paths:
        msg = f"no ground-truth masks for {image_path} (expected {mask_dir}/000.png)"
        raise FileNotFoundError(msg)
    with Image.open(image_path) as image:
        image_size = image.size
    regions = []
    for mask_path in mask_paths:
        with Image.open(mask_path) as mask_image:
            if mask_image.size != image_size:
                msg = f"mask {mask_path} is {mask_image.size[0]}x{mask_image.size[1]}, its image {image_path} is "
                msg += f"{image_size[0]}x{image_size[1]}"
                raise ValueError(msg)
            values = np.asarray(mask_image.convert("L"))
        mask = values > 0
        if not mask.any():
            continue
        pixel_value = int(np.bincount(values[mask]).argmax())
        entry = config.get(pixel_value)
        if entry is None:
            msg = f"{mask_path} holds pixel value {pixel_value}, which {config_path} does not define"
            raise ValueError(msg)
        area = float(mask.sum())
        threshold = float(entry["saturation_threshold"])
        saturation = threshold * area if entry["relative_saturation"] else min(threshold, area)
        regions.append(DefectRegion(mask, pixel_value, entry["defect_name"], saturation))
    return regions
