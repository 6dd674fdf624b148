"""Student decoder of reverse distillation, optionally fed a prior map at every stage."""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .blocks import conv_block


class ReconstructionDecoder(nn.Module):
    """Upsamples a bottleneck back to the encoder levels it must reproduce (deepest level first).

    Args:
        in_channels: Channels of the bottleneck.
        level_channels: Encoder channels of the reconstructed levels, shallow to deep (e.g. layer1..layer3).
        prior_channels: Channels of the prior map concatenated at each stage (0: no prior, plain RD decoder).
    """

    def __init__(self, in_channels: int, level_channels: Sequence[int], prior_channels: int = 0) -> None:
        super().__init__()
        self.prior_channels = prior_channels
        stages, heads = [], []
        width_in = in_channels
        for channels in reversed(level_channels):
            stages.append(
                nn.Sequential(conv_block(width_in + prior_channels, channels), conv_block(channels, channels))
            )
            heads.append(nn.Conv2d(channels, channels, kernel_size=1))
            width_in = channels
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)

    def forward(
        self,
        bottleneck: torch.Tensor,
        level_sizes: Sequence[torch.Size],
        prior_grid: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Reconstruct the levels; ``level_sizes`` shallow to deep, output shallow to deep like the encoder's."""
        features = bottleneck
        outputs = []
        for stage, head, size in zip(self.stages, self.heads, reversed(level_sizes), strict=True):
            features = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
            if self.prior_channels:
                prior = F.interpolate(prior_grid, size=size, mode="bilinear", align_corners=False)
                features = torch.cat([features, prior], dim=1)
            features = stage(features)
            outputs.append(head(features))
        return outputs[::-1]
