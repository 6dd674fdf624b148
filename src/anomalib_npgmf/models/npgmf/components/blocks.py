"""Convolution blocks shared by the bottlenecks and decoders.

GroupNorm instead of BatchNorm: its statistics are per sample, so a DDP run gives the same model as one process
(BatchNorm would normalise each rank's half-batch on its own), and eval/export behave exactly like training.
"""

from torch import nn


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels``."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (optionally strided) -> GroupNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        norm(out_channels),
        nn.ReLU(inplace=True),
    )
