"""From encoder/decoder features to an anomaly map and an image score, as the official evaluation does it.

Official pipeline (``utils.evaluation_batch``): per feature group ``1 - cos(E, D)`` on the token grid, bilinearly
upsampled (``align_corners=True``) to the input size and averaged; resized to 256 px; blurred with a 5x5 Gaussian
(sigma 4, zero padding); image score = mean of the top 1% of the blurred map. We do the same and finally resize the
blurred map back to the input size, so anomalib compares it with masks of the input size.

All sizes are Python ints derived from static shapes: nothing here branches on tensor values, so the exported graph
is the eager computation.
"""

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def cosine_distance_map(encoder_features: torch.Tensor, decoder_features: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` over channels of two ``(B, C, h, w)`` maps -> ``(B, 1, h, w)``."""
    return 1.0 - F.cosine_similarity(encoder_features, decoder_features, dim=1).unsqueeze(1)


def gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian ``(k, k)`` centred on the middle pixel."""
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = torch.exp(-squared / (2 * sigma**2))
    return (kernel / kernel.sum()).float()


def top_fraction_mean(anomaly_map: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the ``int(fraction * pixels)`` largest values per image (the max when that count is 0)."""
    flat = anomaly_map.flatten(1)
    count = int(flat.shape[1] * fraction)
    if count < 1:
        return flat.max(dim=1).values
    return flat.topk(count, dim=1).values.mean(dim=1)


class MapScorer(nn.Module):
    """Token-grid distance map -> (image score, blurred map at the input size).

    Args:
        score_size: Side the map is resized to before blurring and scoring (official: 256); ``None`` scores at the
            input size.
        kernel_size: Gaussian kernel side (official: 5).
        sigma: Gaussian sigma (official: 4).
        top_fraction: Fraction of the highest map values averaged into the image score (official: 0.01); ``0``
            takes the maximum.
    """

    def __init__(
        self,
        score_size: int | None = 256,
        kernel_size: int = 5,
        sigma: float = 4.0,
        top_fraction: float = 0.01,
    ) -> None:
        super().__init__()
        if score_size is not None and score_size < 8:
            msg = f"score_size must be None or at least 8 pixels, got {score_size}"
            raise ValueError(msg)
        if kernel_size < 1 or kernel_size % 2 == 0 or not sigma > 0:
            msg = f"blur needs an odd kernel_size >= 1 and sigma > 0, got {kernel_size} and {sigma}"
            raise ValueError(msg)
        if not 0.0 <= top_fraction <= 1.0 or not math.isfinite(top_fraction):
            msg = f"top_fraction must be in [0, 1], got {top_fraction}"
            raise ValueError(msg)
        self.score_size = score_size
        self.top_fraction = top_fraction
        self.padding = kernel_size // 2
        self.register_buffer("kernel", gaussian_kernel(kernel_size, sigma)[None, None], persistent=False)

    def blur(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Gaussian blur with zero padding (``Conv2d(padding=k // 2)`` as in the official code)."""
        return F.conv2d(anomaly_map, self.kernel.to(anomaly_map.dtype), padding=self.padding)

    def forward(self, token_map: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores ``(B,)`` and maps ``(B, 1, H, W)`` of a token-grid map ``(B, 1, h, w)``."""
        anomaly_map = F.interpolate(token_map, size=image_size, mode="bilinear", align_corners=True)
        if self.score_size is not None:
            anomaly_map = F.interpolate(anomaly_map, size=(self.score_size, self.score_size), mode="bilinear")
        anomaly_map = self.blur(anomaly_map)
        score = top_fraction_mean(anomaly_map, self.top_fraction)
        if tuple(anomaly_map.shape[-2:]) != tuple(image_size):
            anomaly_map = F.interpolate(anomaly_map, size=image_size, mode="bilinear")
        return score, anomaly_map
