"""Reverse-distillation loss: per-level cosine distance between teacher and student features."""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def cosine_distance_map(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``1 - cos`` over channels, (B, H, W)."""
    return 1.0 - F.cosine_similarity(teacher, student, dim=1)


class PixelCosineDistillationLoss(nn.Module):
    """Mean over levels and pixels of ``1 - cos(f_E, f_D)``.

    Not named ``ReverseDistillationLoss``: anomalib has a class of that name, and the start-up hook imports this
    module into every anomalib process (no class of ours may share a name with one of anomalib's).

    [ours] Per-pixel rather than RD's flattened-map cosine: the same quantity the anomaly map is made of, and a mean
    over pixels and images, so DDP's gradient averaging reproduces the single-process gradient exactly.
    """

    def forward(self, teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
        """Loss of one branch."""
        losses = [cosine_distance_map(t, s).mean() for t, s in zip(teacher, student, strict=True)]
        return torch.stack(losses).mean()


class NpgmfLoss(nn.Module):
    """Sum of the two branches' reverse-distillation losses and the codebook commitment loss.

    The branches share no trainable parameter, so one summed loss trains each exactly as if alone.
    """

    def __init__(self) -> None:
        super().__init__()
        self.distillation = PixelCosineDistillationLoss()

    def forward(self, outputs: dict[str, list[torch.Tensor] | torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return the total and its parts (for logging)."""
        parts = {
            f"loss_{branch}": self.distillation(outputs["teacher"], outputs[branch])
            for branch in ("logical", "structural")
            if branch in outputs  # a branch can be switched off (ablations)
        }
        parts["loss_commitment"] = outputs["commitment"]
        parts["loss"] = torch.stack(list(parts.values())).sum()
        return parts
