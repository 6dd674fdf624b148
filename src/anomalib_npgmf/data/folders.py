"""The one reader of the MVTec folder tree that MVTec AD, MVTec LOCO and VisA (``visa_pytorch``) share::

    <category>/train/good/*             normal training images
    <category>/validation/good/*        (LOCO only) normal validation images
    <category>/test/good/*              normal test images
    <category>/test/<defect>/*          anomalous test images
    <category>/ground_truth/<defect>/   masks: <stem>/NNN.png (LOCO, one file per region), <stem>_mask.png (MVTec AD)
                                        or <stem>.png (VisA); no ground_truth folder = image labels only

Both datamodules (:class:`~anomalib_npgmf.data.MVTecLOCORegions`, :class:`~anomalib_npgmf.data.MultiCategory`) build
their sample tables from :func:`scan_category`, so an image is found, labelled and given its masks the same way in
both.
"""

from pathlib import Path

from anomalib.data.utils import LabelName, Split

from anomalib_npgmf.ground_truth import image_files

SPLIT_FOLDERS = {"train": Split.TRAIN.value, "validation": Split.VAL.value, "test": Split.TEST.value}


def mask_files(category_root: Path, label: str, image_path: Path) -> list[str]:
    """Ground-truth files of an anomalous test image, in the LOCO, MVTec AD or VisA naming."""
    folder = category_root / "ground_truth" / label
    per_region = folder / image_path.stem
    if per_region.is_dir():
        return [str(p) for p in image_files(per_region)]
    for candidate in (folder / f"{image_path.stem}_mask.png", folder / f"{image_path.stem}.png"):
        if candidate.is_file():
            return [str(candidate)]
    return []


def scan_category(category_root: Path, category: str, require_masks: bool = False) -> list[dict]:
    """Sample rows of one category folder: normal train/validation images, all test images, their masks.

    Rows hold anomalib's sample columns plus ``category``; ``mask_path`` is a list (empty for normal images).
    Masks are required for every anomalous image when ``require_masks`` (LOCO) or when the category has a
    ``ground_truth`` folder.

    Raises:
        FileNotFoundError: An anomalous image without masks where masks are required.
    """
    rows: list[dict] = []
    needs_masks = require_masks or (category_root / "ground_truth").is_dir()
    for split_folder, split in SPLIT_FOLDERS.items():
        labels = [category_root / split_folder / "good"]
        if split_folder == "test":
            labels = sorted(p for p in (category_root / "test").glob("*") if p.is_dir())
        for label_folder in labels:
            normal = label_folder.name == "good"
            for image_path in image_files(label_folder):
                masks: list[str] = []
                if not normal and needs_masks:
                    masks = mask_files(category_root, label_folder.name, image_path)
                    if not masks:
                        expected = category_root / "ground_truth" / label_folder.name / image_path.stem
                        msg = (
                            f"no ground-truth mask for {image_path} (expected {expected}/000.png, "
                            f"{expected}_mask.png or {expected}.png)"
                        )
                        raise FileNotFoundError(msg)
                rows.append(
                    {
                        "path": str(category_root),
                        "category": category,
                        "split": split,
                        "label": label_folder.name,
                        "image_path": str(image_path),
                        "mask_path": masks,
                        "label_index": int(LabelName.NORMAL if normal else LabelName.ABNORMAL),
                    }
                )
    return rows
