"""One dataset item (anomalib ``ImageItem``) from an image and its ground-truth files, with the size check anomalib
lacks: a mask of another size than its image would otherwise surface as a shape error deep inside collation or the
metrics, far from the file at fault.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from anomalib.data import ImageItem
from anomalib.data.utils import LabelName, read_mask
from PIL import Image as PILImage
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2.functional import to_dtype, to_image
from torchvision.tv_tensors import Image, Mask

# PIL modes of one-channel images deeper than 8 bit. PIL's ``convert("RGB")`` (what anomalib's ``read_image`` does)
# clips them at 255, which turns a 16-bit image almost entirely white: a silently wrong score, so we scale instead.
_DEEP_GRAY_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}


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


def anomalib_reads_it_wrong(image_path: str | Path) -> bool:
    """Whether anomalib's ``read_image`` would clip this file (16-bit / 32-bit grey or float): read it ourselves."""
    try:
        with PILImage.open(image_path) as image:
            return image.mode in _DEEP_GRAY_MODES or image.mode == "F"
    except (OSError, ValueError, SyntaxError):
        return False  # unreadable: let the reader raise its error naming the file


def read_rgb_image(image_path: str | Path) -> Image:
    """An image file as a float RGB tensor in [0, 1], whatever its mode.

    Grayscale, palette, RGBA (alpha dropped) and 16-bit RGB go through PIL's RGB conversion, as in anomalib;
    16-bit grayscale is scaled by 65535 instead of being clipped at 255, and float images must already lie in [0, 1].
    Missing, truncated or non-image files raise ``ValueError`` naming the file.
    """
    try:
        with PILImage.open(image_path) as image:
            image.load()
            if image.mode in _DEEP_GRAY_MODES or image.mode == "F":
                values = np.asarray(image, dtype=np.float32)
                scale = _DEEP_GRAY_MODES.get(image.mode, 1.0)
                if image.mode == "I" and float(values.max(initial=0.0)) > scale:
                    msg = f"32-bit integer image with values above 65535; expected 8- or 16-bit (mode {image.mode})"
                    raise ValueError(msg)
                values = values / scale
                if not (np.isfinite(values).all() and values.min(initial=0.0) >= 0 and values.max(initial=0.0) <= 1):
                    msg = f"float image with values outside [0, 1] (mode {image.mode}); expected 8- or 16-bit"
                    raise ValueError(msg)
                return Image(torch.from_numpy(values).unsqueeze(0).expand(3, -1, -1).contiguous())
            rgb = np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:  # missing, truncated or not an image (PIL names no file)
        msg = f"cannot read image {image_path}: {error}"
        raise ValueError(msg) from error
    return to_dtype(to_image(rgb), torch.float32, scale=True)  # exactly anomalib's read_image for 8-bit files


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
    image = read_rgb_image(image_path)
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
