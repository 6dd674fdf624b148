"""Invariant normality prior [ours, issue 18]: a Gaussian of whole-image feature statistics that ignore where parts lie
and which way they point.

Why: on scenes whose parts lie anywhere at any angle (a screw bag), the count, length and kind rules change *how much*
of each kind of feature an image holds, not where it is. The global prior's means over a 2x2 grid also move with where
parts lie, and a random-init encoder's features move with which way a part points, so one part more or fewer drowns
in that spread. Here each image's channel means and standard deviations (whole image, levels 2-4) are averaged over
its flips and right-angle rotations, which removes the quarter-turn and mirror part of that spread. Measured with the
frozen random-init resnet18 alone on ``box`` (the scene we tune on; 128 px, data seeds 0 and 1): logical image AUROC
0.75 with whole-image means, 0.89 with means and standard deviations averaged over the eight views.

It is an image-level statistic like the global prior: its distance enters the image score, never the anomaly map.
"""

from collections.abc import Sequence

import torch

from .global_prior import GlobalNormalityPrior


def symmetric_views(images: torch.Tensor) -> torch.Tensor:
    """(V·B, C, H, W) views of (B, C, H, W) images, view-major: the 8 flips / quarter-turns of a square image, or the
    4 that keep a non-square image's shape (identity, both mirrors, half-turn)."""
    views = [images, images.flip(-1), images.flip(-2), images.flip(-2, -1)]
    if images.shape[-2] == images.shape[-1]:
        turned = images.transpose(-2, -1)
        views += [turned, turned.flip(-1), turned.flip(-2), turned.flip(-2, -1)]
    return torch.cat(views)


def view_count(input_size: Sequence[int]) -> int:
    """How many views :func:`symmetric_views` makes of an image of ``input_size`` (H, W)."""
    return 8 if input_size[0] == input_size[1] else 4


def view_size(input_size: Sequence[int], scale: float) -> tuple[int, ...]:
    """(H, W) at which the views of an ``input_size`` image are encoded: ``scale`` of each side (0 < scale <= 1)."""
    if not 0 < scale <= 1:
        msg = f"invariant_scale must be in (0, 1], got {scale}"
        raise ValueError(msg)
    return tuple(max(1, round(side * scale)) for side in input_size)


def moment_descriptor(levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N, 2 · sum C_k): each level's channel means and standard deviations over the whole image."""
    parts = []
    for level in levels:
        parts += [level.mean(dim=(-2, -1)), level.std(dim=(-2, -1))]
    return torch.cat(parts, dim=1)


class InvariantNormalityPrior(GlobalNormalityPrior):
    """Mahalanobis distance of an image's view-averaged moments to the normal images' Gaussian (one per category).

    Fitting, shrinkage, categories and the DDP behaviour are the global prior's; only the descriptor differs. Its
    ``levels`` are the encoder levels of :func:`symmetric_views` of a batch, not of the batch itself.

    Args:
        level_channels: Channels of the encoder levels it reads.
        views: Views per image in the levels it receives (:func:`view_count`).
        num_categories: Gaussians held.
        max_dim: Largest descriptor kept (a seeded random subset above it, as the global prior).
    """

    def __init__(self, level_channels: Sequence[int], views: int, num_categories: int = 1, max_dim: int = 2048) -> None:
        super().__init__(level_channels, num_categories, grid=1, max_dim=max_dim, width=2 * int(sum(level_channels)))
        self.views = int(views)

    def descriptor(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, D) mean over each image's views of its moment descriptor."""
        moments = moment_descriptor(levels)
        moments = moments.reshape(self.views, -1, moments.shape[1]).mean(dim=0)
        if self.feature_index.numel() == moments.shape[1]:
            return moments
        return moments.index_select(1, self.feature_index)
