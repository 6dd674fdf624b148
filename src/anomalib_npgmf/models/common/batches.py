"""Checks on anomalib batches that both models run in every step, the image-size argument they both take, how
they log their losses, and the pixel seeds of their pseudo-anomalies."""

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from anomalib.data import Batch


def batch_image_paths(batch: Batch) -> list[str]:
    """Each image's path, or a stand-in unique to the image when the batch has none (tensors given directly)."""
    count = batch.image.shape[0]
    paths = batch.image_path if batch.image_path is not None else [None] * count
    return [str(path) if path is not None else f"#{id(batch)}-{index}" for index, path in enumerate(paths)]


def image_seed(image: torch.Tensor) -> int:
    """A seed from one image's pixels (as the datamodule gives them): the same in every process and wherever the
    dataset lies, so random pseudo-anomalies seeded by it do not depend on the dataset's folder, as a path's would."""
    return zlib.crc32(image.detach().cpu().float().contiguous().numpy().tobytes())


def check_finite_images(batch: Batch) -> None:
    """Fail on NaN/Inf pixels, naming the images, instead of producing NaN scores."""
    finite = torch.isfinite(batch.image.reshape(batch.image.shape[0], -1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = [path for path, ok in zip(batch_image_paths(batch), finite.tolist(), strict=True) if not ok]
    msg = f"input images contain NaN or Inf pixel values: {', '.join(bad[:5])}"
    raise ValueError(msg)


class CheckedEvaluationSteps:
    """Validation, test and predict steps that refuse NaN/Inf input; mix in before ``AnomalibModule``.

    Validation scores the images with ``self.model`` (anomalib's post-processor fits its normalisation and
    threshold on them); test and predict are anomalib's own steps, after the check (else: NaN scores, silently).
    """

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> Any:
        """Score validation images after refusing NaN/Inf input."""
        del args, kwargs
        check_finite_images(batch)
        return batch.update(**self.model(batch.image)._asdict())  # type: ignore[attr-defined]

    def test_step(self, batch: Batch, *args: Any, **kwargs: Any) -> Any:
        """As anomalib's, after refusing NaN/Inf input."""
        check_finite_images(batch)
        return super().test_step(batch, *args, **kwargs)  # type: ignore[misc]

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """As anomalib's, after refusing NaN/Inf input."""
        check_finite_images(batch)
        return super().predict_step(batch, batch_idx, dataloader_idx)  # type: ignore[misc]


def as_image_size(size: int | Sequence[int], name: str = "image_size", minimum: int = 32) -> tuple[int, int]:
    """``size`` as (height, width), each side at least ``minimum``; the error names the parameter."""
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(side) for side in size)
    if len(size) != 2 or min(size) < minimum:
        msg = f"{name} must be an int or (height, width) with both sides >= {minimum}, got {size}"
        raise ValueError(msg)
    return size


def log_losses(module: Any, losses: Mapping[str, torch.Tensor], batch_size: int, on_step: bool = False) -> None:
    """Log each loss term as ``train_<name>`` (epoch mean, reduced over DDP ranks; the total on the progress bar)."""
    for name, value in losses.items():
        module.log(
            f"train_{name}",
            value.detach(),
            on_step=on_step and name == "loss",
            on_epoch=True,
            prog_bar=name == "loss",
            batch_size=batch_size,
            sync_dist=True,
        )
