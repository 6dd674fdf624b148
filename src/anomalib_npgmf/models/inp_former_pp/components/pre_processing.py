"""INP-Former++'s input pipeline: fixed resize, centre crop, ImageNet normalisation, and the size checks it needs.

Fixed sizes make the exported graph see exactly what training saw, whatever the size of the input image; the ViT
needs a model input that is a multiple of its patch, so a wrong size is refused with the parameter to change.
"""

from collections.abc import Sequence

import torch
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import CenterCrop, Compose, Normalize, Resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_crop_normalise(resize: tuple[int, int], crop_size: int | None) -> PreProcessor:
    """Resize to ``resize`` (paper: 448), centre crop to ``crop_size`` (paper: 392; ``None``: none), normalise."""
    steps: list[torch.nn.Module] = [Resize(resize, antialias=True)]
    if crop_size is not None:
        steps.append(CenterCrop(crop_size))
    steps.append(Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    return PreProcessor(transform=Compose(steps))


def check_crop_size(crop_size: int | None, resize: tuple[int, int]) -> None:
    """``crop_size`` must fit inside the resized image."""
    if crop_size is not None and (crop_size < 14 or crop_size > min(resize)):
        msg = f"crop_size must be None or between 14 and min(image_size)={min(resize)}, got {crop_size}"
        raise ValueError(msg)


def check_patch_multiple(size: Sequence[int], patch: Sequence[int]) -> None:
    """The model input (crop, else resize) must be a multiple of the ViT patch size."""
    if any(side % step for side, step in zip(size, patch, strict=True)):
        msg = (
            f"the model input {tuple(size)} (crop_size, else image_size) must be a multiple of the ViT patch size "
            f"{tuple(patch)}: e.g. image_size=448, crop_size=392 (paper) or image_size=128, crop_size=112"
        )
        raise ValueError(msg)
