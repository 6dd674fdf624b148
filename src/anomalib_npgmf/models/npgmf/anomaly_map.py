"""Npgmf's maps on their own: each branch's reconstruction-error map, and the fusion of normalised part maps.

Kept apart from the network (as anomalib's ``padim/anomaly_map.py``) so what a score is made of can be read in one
place. The normalisers and fusion weights are the model's (buffers / hparams); these functions only combine them.
"""

from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F  # noqa: N812

from .loss import cosine_distance_map


def reconstruction_map(
    teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: tuple[int, int]
) -> torch.Tensor:
    """Sum over levels of ``1 - cos(f_E^k, f_D^k)`` upsampled to ``size``: (B, 1, H, W), not yet smoothed."""
    total = 0.0
    for t, s in zip(teacher, student, strict=True):
        distance = cosine_distance_map(t, s).unsqueeze(1)
        total = total + F.interpolate(distance, size=size, mode="bilinear", align_corners=False)
    return total


def fuse_normalised(
    raw: Mapping[str, torch.Tensor],
    normalizers: Mapping[str, torch.nn.Module],
    weights: Mapping[str, float],
    floors: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """Weighted sum of each part's map (or image-level value) normalised on its normal-image quantiles; a part named
    in ``floors`` counts only above its floor (:func:`floored`)."""
    fused = 0.0
    for part, raw_map in raw.items():
        normalised = normalizers[part](raw_map)
        if floors and part in floors:
            normalised = floored(normalised, floors[part])
        fused = fused + weights[part] * normalised
    return fused


def floored(normalised: torch.Tensor, floor: float) -> torch.Tensor:
    """What of a normalised map lies above ``floor``, from 0 (a map that is zero wherever nothing is wrong: below its
    floor it adds nothing, not a constant)."""
    return (normalised - floor).clamp_min(0.0)
