"""anomalib's post-processor with a normalisation that keeps the order of scores and map values.

anomalib 2.7's ``PostProcessor`` normalises with ``((x - threshold) / (max - min) + 0.5).clamp(0, 1)``, where min, max
and threshold come from the validation set. On MVTec LOCO that set holds normal images only, so every value more than
half the normal range above the normal maximum becomes exactly 1: a clear defect and a faint one tie, and anomalib's
pixel AUROC and our AU-sPRO, computed on the normalised maps, drop for that alone (the demo: pixel AUROC 0.756 on
normalised maps against 0.936 on the raw maps of the same checkpoint). Any strictly increasing map keeps the ranks;
this one keeps anomalib's linear map in the middle of ``[0, 1]``, sends the tails smoothly into thin bands at either
end, and moves the thresholds with it, so every label and mask is the one anomalib would give.
"""

import torch
from anomalib.post_processing import PostProcessor

# Share of [0, 1] that each tail (values below the normal minimum / above the normal maximum) is squeezed into: small
# enough that heatmaps look like anomalib's.
TAIL_BAND = 0.05
# The tails decay as a power this small of the distance beyond the normal range, slowly enough that float32 (6e-8
# apart near 1) keeps values 0.1% apart distinct up to a million normal ranges out; a hyperbola (power 1) would tie
# values 0.1% apart from ~30 ranges out.
TAIL_POWER = 0.25


def squash_to_unit(position: torch.Tensor, tail: float = TAIL_BAND, power: float = TAIL_POWER) -> torch.Tensor:
    """Strictly increasing, C1 map of anomalib's unclamped position (0.5 at the threshold) into the open ``(0, 1)``.

    ``[0, 1]`` maps linearly onto ``[tail, 1 - tail]``; beyond, ``tail * (1 + rate * distance) ** -power`` with the
    same slope at the joint approaches 0 or 1 without reaching it. The threshold's position 0.5 stays at 0.5.
    """
    slope = 1.0 - 2.0 * tail
    rate = slope / (tail * power)
    middle = tail + slope * position
    above = 1.0 - tail * (1.0 + rate * (position - 1.0).clamp(min=0)) ** -power
    below = tail * (1.0 + rate * (-position).clamp(min=0)) ** -power
    return torch.where(position > 1, above, torch.where(position < 0, below, middle))


def squash_threshold(threshold: float) -> torch.Tensor:
    """anomalib's normalised threshold ``1 - sensitivity`` on the squashed scale. At 1 (sensitivity 0) it stays 1:
    anomalib's clamped values never exceed it, so nothing is flagged there either."""
    return torch.tensor(1.0) if threshold >= 1 else squash_to_unit(torch.tensor(float(threshold)))


class RankPreservingPostProcessor(PostProcessor):
    """``PostProcessor`` whose normalisation never ties two different values (see the module docstring).

    Same buffers, statistics, thresholds and checkpoint keys as anomalib's, so checkpoints load either way and
    ``post_processor=PostProcessor()`` restores anomalib's behaviour. Traced into exported graphs like anomalib's.
    """

    @staticmethod
    def _normalize(
        preds: torch.Tensor | None,
        norm_min: torch.Tensor,
        norm_max: torch.Tensor,
        threshold: torch.Tensor,
    ) -> torch.Tensor | None:
        """anomalib's normalisation with :func:`squash_to_unit` in place of its clamp (a zero range squashes anomalib's
        0, 0.5 or 1 by the side of the threshold; unfitted statistics leave the values raw, as in anomalib)."""
        if preds is None:
            return preds
        threshold = torch.where(torch.isnan(threshold), (norm_max + norm_min) / 2, threshold)
        value_range = norm_max - norm_min
        zero_range = value_range == 0
        position = (preds - threshold) / torch.where(zero_range, torch.ones_like(value_range), value_range) + 0.5
        degenerate = torch.where(preds > threshold, 1.0, torch.where(preds < threshold, 0.0, 0.5))
        normalized = squash_to_unit(torch.where(zero_range, degenerate, position))
        fitted = ~torch.isnan(norm_min) & ~torch.isnan(norm_max)
        return torch.where(fitted, normalized, preds)

    @property
    def normalized_image_threshold(self) -> torch.Tensor:
        """anomalib's sensitivity threshold, squashed like the scores (labels are anomalib's)."""
        return squash_threshold(1.0 - self.image_sensitivity)

    @property
    def normalized_pixel_threshold(self) -> torch.Tensor:
        """anomalib's sensitivity threshold, squashed like the maps (masks are anomalib's)."""
        return squash_threshold(1.0 - self.pixel_sensitivity)


class RankPreservingPostProcessing:
    """Mixin for an ``AnomalibModule``: :class:`RankPreservingPostProcessor` is its default post-processor."""

    def configure_post_processor(self) -> PostProcessor:
        """The default when ``post_processor=True``; pass ``PostProcessor()`` for anomalib's clamped one."""
        return RankPreservingPostProcessor()
