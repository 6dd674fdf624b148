"""Bottlenecks: the paper's OCE on f_E^5 (logical branch) and RD's multi-scale OCBE (structural branch)."""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .blocks import conv_block


class OneClassEmbedding(nn.Module):
    """OCE [paper]: two stride-2 convolutions on the deepest encoder map f_E^5 give a low-dimensional bottleneck.

    Args:
        in_channels: Channels of f_E^5.
        out_channels: Bottleneck channels.
        strides: Strides of the two convolutions; the paper's ``(2, 2)``. Small CPU images may use ``(2, 1)`` so the
            bottleneck keeps more than one cell.
    """

    def __init__(self, in_channels: int, out_channels: int, strides: Sequence[int] = (2, 2)) -> None:
        super().__init__()
        first, second = strides
        self.layers = nn.Sequential(
            conv_block(in_channels, out_channels, stride=first),
            conv_block(out_channels, out_channels, stride=second),
        )

    def forward(self, deepest_features: torch.Tensor) -> torch.Tensor:
        """Compress f_E^5 to the one-class embedding."""
        return self.layers(deepest_features)


class MultiScaleBottleneck(nn.Module):
    """RD's OCBE [Deng & Li 2022]: fuse levels 2-4 at the deepest of them, then one stride-2 block.

    The structural branch keeps this detail-rich bottleneck; it is what lets it reconstruct normal texture precisely
    enough to flag scratches and stains.
    """

    def __init__(self, level_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        fused = out_channels // 2
        self.projections = nn.ModuleList(nn.Conv2d(c, fused, kernel_size=1, bias=False) for c in level_channels)
        self.fuse = nn.Sequential(
            conv_block(fused * len(level_channels), out_channels, stride=2),
            conv_block(out_channels, out_channels),
        )

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Resize each level to the deepest level's size, concatenate, compress."""
        size = levels[-1].shape[-2:]
        resized = [
            F.adaptive_avg_pool2d(projection(level), size)
            for projection, level in zip(self.projections, levels, strict=True)
        ]
        return self.fuse(torch.cat(resized, dim=1))
