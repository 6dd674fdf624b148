"""Patch normality prior: a Gaussian of local encoder features at every position of the image.

[ours] The structural branch reconstructs features and scores the residual; with a random-init backbone (all we can
run here) that residual is weak for small structural defects, while a per-position Gaussian of the same features
(the PaDiM statistic) is strong: measured on the generated box scene, PaDiM reached structural AUROC 0.81 where the
M_SAD reconstruction map reached 0.70. So M_SAD also scores each position by the Mahalanobis distance of its
multi-level feature to the normal images' features at that position. It needs no training, only a pass over the
normal training images, and its buffers make the exported graph self-contained.

Features: levels 1-3 of the encoder at the resolution of level 2 (level 1 average-pooled, level 3 upsampled), a fixed
random subset of ``dim`` channels (seeded, PaDiM's reduction). Covariances are Ledoit-Wolf shrunk per position
(few images, ``dim`` channels); statistics come from the de-duplicated features of all DDP ranks.
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .global_prior import (
    checked_category_index,
    ledoit_wolf_covariance,
    mahalanobis_squared,
    precision_from_covariance,
)


def patch_features(levels: Sequence[torch.Tensor], channel_index: torch.Tensor) -> torch.Tensor:
    """(B, P, d): selected channels of levels 1-3 at level 2's resolution, one row per position."""
    target = tuple(levels[1].shape[-2:])
    factor = levels[0].shape[-1] // target[1]
    if tuple(levels[0].shape[-2:]) == (target[0] * factor, target[1] * factor):
        first = F.avg_pool2d(levels[0], kernel_size=factor) if factor > 1 else levels[0]
    else:  # input size not a multiple of the stride: level sizes are not exact multiples
        first = F.interpolate(levels[0], size=target, mode="bilinear", align_corners=False)
    third = F.interpolate(levels[2], size=target, mode="bilinear", align_corners=False)
    stacked = torch.cat([first, levels[1], third], dim=1).index_select(1, channel_index)
    return stacked.flatten(2).transpose(1, 2)


class PatchNormalityPrior(nn.Module):
    """Per-position Mahalanobis distance of local features to the normal images' Gaussian at that position.

    Args:
        level_channels: Channels of encoder levels 1-3.
        grid: (h, w) of level 2 for the model's fixed input size.
        num_categories: Gaussians per position (one per category; the image's route picks one).
        dim: Channels kept (random subset, PaDiM's reduction); capped at the channels available.
        seed: Seed of the channel subset (fixed, so every rank and every run picks the same channels).
    """

    def __init__(
        self,
        level_channels: Sequence[int],
        grid: tuple[int, int],
        dim: int = 64,
        seed: int = 0,
        num_categories: int = 1,
    ) -> None:
        super().__init__()
        total = int(sum(level_channels))
        dim = min(int(dim), total)
        if dim < 1:
            msg = f"patch prior needs at least one channel, got dim={dim}"
            raise ValueError(msg)
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(total, generator=generator)[:dim].sort().values
        positions = int(grid[0] * grid[1])
        self.grid = (int(grid[0]), int(grid[1]))
        self.register_buffer("channel_index", index)
        self.register_buffer("mean", torch.zeros(num_categories, positions, dim))
        self.register_buffer("precision", torch.eye(dim).repeat(num_categories, positions, 1, 1))
        self.register_buffer("fitted", torch.tensor(False))

    def features(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, P, d) features of each position (what :meth:`fit` collects from the normal images)."""
        return patch_features(levels, self.channel_index)

    def samples(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """What :meth:`fit` is fitted on, one entry per image (the common interface of the fitted priors)."""
        return self.features(levels)

    @torch.no_grad()
    def fit(self, features: torch.Tensor, category_index: torch.Tensor | None = None) -> None:
        """Fit per-position mean and shrunk precision per category on (N, P, d) features (>= 2 images each)."""
        num_categories, *expected = self.mean.shape
        if features.ndim != 3 or tuple(features.shape[1:]) != tuple(expected):
            shape = tuple(features.shape)
            msg = f"patch prior needs normal-image features of shape (N, {expected[0]}, {expected[1]}), got {shape}"
            raise ValueError(msg)
        if not torch.isfinite(features).all():
            msg = "patch prior: the training images gave NaN/Inf features (check the input images)"
            raise ValueError(msg)
        index = checked_category_index(category_index, features.shape[0], num_categories)
        for category in range(num_categories):
            samples = features[index == category]
            if samples.shape[0] < 2:
                msg = f"patch prior needs at least 2 normal images per category; category #{category} has "
                msg += str(samples.shape[0])
                raise ValueError(msg)
            per_position = samples.transpose(0, 1)  # (P, N, d)
            covariance = ledoit_wolf_covariance(per_position)
            self.mean[category] = per_position.double().mean(dim=1).to(self.mean.dtype)
            self.precision[category] = precision_from_covariance(covariance).to(self.precision.dtype)
        self.fitted.fill_(True)

    def forward(self, levels: Sequence[torch.Tensor], category_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, h, w) Mahalanobis distance map on level 2's grid, under each image's category (0 before fitting)."""
        features = self.features(levels)  # (B, P, d)
        if category_index is None:
            mean, precision = self.mean[:1], self.precision[:1]
        else:
            mean, precision = self.mean[category_index], self.precision[category_index]
        centred = features - mean
        squared = mahalanobis_squared(centred, precision)
        distance = torch.sqrt(torch.clamp(squared, min=0.0)) * self.fitted.to(squared.dtype)
        return distance.reshape(-1, 1, *self.grid)
