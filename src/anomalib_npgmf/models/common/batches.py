"""Checks on anomalib batches that both models run in every step."""

import torch
from anomalib.data import Batch


def batch_image_paths(batch: Batch) -> list[str]:
    """Each image's path, or a stand-in unique to the image when the batch has none (tensors given directly)."""
    count = batch.image.shape[0]
    paths = batch.image_path if batch.image_path is not None else [None] * count
    return [str(path) if path is not None else f"#{id(batch)}-{index}" for index, path in enumerate(paths)]


def check_finite_images(batch: Batch) -> None:
    """Fail on NaN/Inf pixels, naming the images, instead of producing NaN scores."""
    finite = torch.isfinite(batch.image.reshape(batch.image.shape[0], -1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = [path for path, ok in zip(batch_image_paths(batch), finite.tolist(), strict=True) if not ok]
    msg = f"input images contain NaN or Inf pixel values: {', '.join(bad[:5])}"
    raise ValueError(msg)
