"""Residual learning (INP-Former++): a small learner that reads encoder-minus-reconstruction residuals.

What the INP-Former++ paper states: residual learning is added to INP-Former and improves single-class, multi-class,
few-shot, semi-supervised and zero-shot detection. Its code is not public, so the form here is ours (see the model
README): a per-token MLP reads ``|e/|e| - d/|d||`` (unit-norm encoder and reconstructed features, averaged over the
feature groups) and predicts whether the token is anomalous. The residual of unit vectors does not depend on what
the category looks like, only on how well it was reconstructed, which is why a learner on residuals transfers to
categories it never saw.

It is trained on pseudo-anomalies made in feature space: tokens inside random rectangles get Gaussian noise in every
encoder layer read, the corrupted features go through the (frozen for this loss) extractor and decoder, and the head
learns to tell the rectangles from the rest. The reconstruction network itself never trains on corrupted features.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def unit_residual(encoder_groups: list[torch.Tensor], decoder_groups: list[torch.Tensor]) -> torch.Tensor:
    """Mean over groups of ``|e/|e| - d/|d||`` for ``(B, C, h, w)`` maps -> ``(B, C, h, w)``."""
    residuals = [
        (F.normalize(encoder, dim=1) - F.normalize(decoder, dim=1)).abs()
        for encoder, decoder in zip(encoder_groups, decoder_groups, strict=True)
    ]
    return torch.stack(residuals, dim=0).mean(dim=0)


class ResidualHead(nn.Module):
    """Per-token MLP on residual features -> anomaly logit ``(B, 1, h, w)``."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(16, dim // 4)
        self.net = nn.Sequential(
            nn.Conv2d(dim, hidden, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(hidden, 1, kernel_size=1),
        )

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        """Logits of residual features ``(B, C, h, w)``; scaled by sqrt(C) so the input is O(1) for any width."""
        return self.net(residual * residual.shape[1] ** 0.5)


def pseudo_anomaly_seeds(image_seeds: Sequence[int], step: int) -> list[int]:
    """Per-image seeds of the residual head's pseudo-anomalies from each image's pixel seed
    (:func:`~anomalib_npgmf.models.common.image_seed`), the optimiser step and the run's seed.

    The same image at the same step gets the same pseudo-anomaly on one process or on any DDP rank, and wherever
    the dataset lies (seeds from image paths made training depend on the dataset's folder).
    """
    base = torch.initial_seed() + 7919 * int(step)
    return [base + 1_000_003 * int(seed) for seed in image_seeds]


def per_image_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image, so an image's pseudo-anomaly does not depend on its batch or DDP rank."""
    return [torch.Generator().manual_seed(int(seed) % (2**63)) for seed in seeds]


def _generator_of(generators: torch.Generator | Sequence[torch.Generator] | None, index: int) -> torch.Generator | None:
    if generators is None or isinstance(generators, torch.Generator):
        return generators
    return generators[index]


def random_box_masks(
    batch: int,
    grid: tuple[int, int],
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    max_boxes: int = 3,
    min_side: float = 0.1,
    max_side: float = 0.4,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``(B, 1, h, w)`` float masks with 1..``max_boxes`` random rectangles each (sides a fraction of the grid).

    ``generator``: one RNG for the batch, one per image (see :func:`per_image_generators`), or ``None`` (global RNG).
    """
    height, width = grid
    masks = torch.zeros(batch, 1, height, width)
    for index in range(batch):
        generator_i = _generator_of(generator, index)
        count = int(torch.randint(1, max_boxes + 1, (1,), generator=generator_i))
        for _ in range(count):
            sides = torch.empty(2).uniform_(min_side, max_side, generator=generator_i)
            box_h = max(1, round(float(sides[0]) * height))
            box_w = max(1, round(float(sides[1]) * width))
            top = int(torch.randint(0, height - box_h + 1, (1,), generator=generator_i))
            left = int(torch.randint(0, width - box_w + 1, (1,), generator=generator_i))
            masks[index, 0, top : top + box_h, left : left + box_w] = 1.0
    return masks.to(device) if device is not None else masks


def corrupt_tokens(
    layer_tokens: list[torch.Tensor],
    token_mask: torch.Tensor,
    noise_scale: float,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> list[torch.Tensor]:
    """Add Gaussian noise (std ``noise_scale`` x each layer's token RMS) to the tokens where ``token_mask`` is 1.

    Args:
        layer_tokens: Per-layer patch tokens ``(B, N, C)``.
        token_mask: ``(B, N)`` mask of the tokens to corrupt.
        noise_scale: Noise std relative to the layer's root-mean-square token value (per image).
        generator: Optional CPU RNG for the batch, or one per image (rank-independent pseudo-anomalies).
    """
    corrupted = []
    for tokens in layer_tokens:
        rms = tokens.detach().pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
        if generator is None or isinstance(generator, torch.Generator):
            noise = torch.randn(tokens.shape, generator=generator)
        else:
            noise = torch.stack([torch.randn(tokens.shape[1:], generator=g) for g in generator])
        noise = noise.to(tokens.device, tokens.dtype)
        corrupted.append(tokens + token_mask.unsqueeze(-1).to(tokens.dtype) * noise * rms * noise_scale)
    return corrupted
