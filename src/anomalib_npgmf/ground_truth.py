"""MVTec LOCO ground truth: which anomaly type an image is, and its defect regions with their saturation areas.

The lowest layer above ``utils``: the metrics read regions from here (keyed by image path, so they work with any
datamodule and any model), and so do the datamodules and the evaluation. It imports no other part of the package.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

ANOMALY_DIRS = {"good": "good", "logical_anomalies": "logical", "structural_anomalies": "structural"}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
"""Image files every reader of ours accepts (compared lower-case)."""


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (below it when ``recursive``), sorted; ``[]`` when it is no folder."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def region_mask_files(category_root: Path, label: str, image_path: Path) -> list[Path]:
    """The LOCO per-region mask files of an anomalous image: ``ground_truth/<label>/<stem>/NNN.png``."""
    return sorted((category_root / "ground_truth" / label / image_path.stem).glob("*.png"))


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
    mask_paths = region_mask_files(category_root, image_path.parent.name, image_path)
    if not mask_paths:
        mask_dir = category_root / "ground_truth" / image_path.parent.name / image_path.stem
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
