"""One dataset item (anomalib ``ImageItem``) from an image and its ground-truth files, with the size check anomalib
lacks: a mask of another size than its image would otherwise surface as a shape error deep inside collation or the
metrics, far from the file at fault.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from anomalib.data import ImageItem
from anomalib.data.utils import LabelName, read_image, read_mask
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Mask


def mask_paths_of(value: object) -> list[str]:
    """The mask files of a sample-table cell: ``""`` (none), one path, or a list of paths (LOCO: one per region)."""
    if value is None or (isinstance(value, float) and value != value):  # NaN from a concatenated table
        return []
    if isinstance(value, str | Path):
        return [str(value)] if str(value) else []
    return [str(path) for path in value if str(path)]


def union_mask(image_path: str, mask_paths: Sequence[str], size: tuple[int, int]) -> Mask:
    """Union of the ground-truth masks of one image (bool, ``size`` = image height, width)."""
    if not mask_paths:
        msg = f"{image_path} is labelled anomalous but has no ground-truth mask file"
        raise FileNotFoundError(msg)
    union = torch.zeros(size, dtype=torch.bool)
    for mask_path in mask_paths:
        try:
            mask = read_mask(mask_path, as_tensor=True)
        except OSError as error:
            msg = f"cannot read ground-truth mask {mask_path} of {image_path}: {error}"
            raise FileNotFoundError(msg) from error
        if tuple(mask.shape[-2:]) != tuple(size):
            msg = (
                f"mask {mask_path} is {mask.shape[-1]}x{mask.shape[-2]}, its image {image_path} is {size[1]}x{size[0]}"
                " (width x height); ground-truth masks must have their image's size"
            )
            raise ValueError(msg)
        union |= mask.bool()
    return Mask(union)


def load_image_item(
    image_path: str,
    mask_paths: Sequence[str],
    label_index: int,
    augmentations: Transform | None,
    with_mask: bool = True,
) -> ImageItem:
    """Read an image (and the union of its masks), augment both alike, and wrap them in anomalib's ``ImageItem``.

    Args:
        image_path: The image file.
        mask_paths: Its ground-truth mask files (empty for a normal image).
        label_index: 0 normal, 1 anomalous.
        augmentations: torchvision v2 transform applied to image and mask together.
        with_mask: ``False`` for classification-only data (``gt_mask`` stays ``None``).
    """
    try:
        image = read_image(image_path, as_tensor=True)
    except (OSError, ValueError) as error:  # missing, truncated or not an image (PIL's errors name no file)
        msg = f"cannot read image {image_path}: {error}"
        raise ValueError(msg) from error
    gt_mask = None
    if with_mask:
        size = (int(image.shape[-2]), int(image.shape[-1]))
        is_normal = label_index == LabelName.NORMAL
        gt_mask = Mask(torch.zeros(size, dtype=torch.bool)) if is_normal else union_mask(image_path, mask_paths, size)
    if augmentations is not None:
        if gt_mask is None:
            image = augmentations(image)
        else:
            image, gt_mask = augmentations(image, gt_mask)
    return ImageItem(
        image=image,
        gt_mask=gt_mask,
        gt_label=torch.tensor(label_index),
        image_path=image_path,
        mask_path=mask_paths[0] if mask_paths else "",
    )
