"""Frozen multi-level CNN encoder (the teacher of reverse distillation)."""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from anomalib_npgmf.models.common import create_timm_encoder


class FrozenEncoder(nn.Module):
    """timm CNN returning feature maps f_E^2..f_E^5 (stride 4, 8, 16, 32); never trained, always in eval mode.

    Args:
        backbone: timm model name (paper: ``resnet101``).
        pre_trained: Load local pretrained weights (see :func:`create_timm_encoder`).
        weights_path: Local weights file for ``pre_trained=True``.
        out_indices: timm feature indices; ``(1, 2, 3, 4)`` are ResNet's layer1..layer4.
    """

    def __init__(
        self,
        backbone: str,
        pre_trained: bool,
        weights_path: str | Path | None = None,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__()
        self.model = create_timm_encoder(
            backbone,
            pre_trained,
            weights_path,
            parameter="backbone_weights",
            features_only=True,
            out_indices=tuple(out_indices),
        )
        self.channels: list[int] = list(self.model.feature_info.channels())
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> "FrozenEncoder":
        """Stay in eval mode: batch-norm statistics of the teacher must not drift while the students train."""
        del mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return one feature map per ``out_indices`` entry, shallow to deep."""
        return list(self.model(images))
