"""sPRO / AU-sPRO of MVTec LOCO (Bergmann et al., IJCV 2022), exact, as plain functions.

Definitions (that paper): each ground-truth region has a saturation area ``s``; at threshold ``t`` its sPRO is
``min(1, |{p in region : map(p) >= t}| / s)``; the sPRO curve averages over all regions of all images against the
false-positive rate measured on the anomaly-free images only (fraction of their pixels ``>= t``); AU-sPRO is the area
under that curve for FPR in ``[0, fpr_limit]`` (trapezoids, the curve interpolated at ``fpr_limit``), divided by
``fpr_limit``. Maps at another resolution than their masks are resized (bilinear) to the mask resolution, as the
official evaluation scores at ground-truth resolution. Pixels of anomalous images outside their regions count for
nothing, as in LOCO.

Thresholds are every distinct map value that matters (exact curve, no binning); only values at or above the
threshold where the FPR passes ``fpr_limit`` are visited, so the cost grows with the anomaly-free pixels, not with
the full value range.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

Region = tuple[np.ndarray, float]  # (bool mask H x W, saturation area)


def _as_numpy_map(anomaly_map: np.ndarray | torch.Tensor, shape: tuple[int, int] | None) -> np.ndarray:
    tensor = torch.as_tensor(np.asarray(anomaly_map) if not isinstance(anomaly_map, torch.Tensor) else anomaly_map)
    tensor = tensor.detach().double().cpu()
    while tensor.ndim > 2 and tensor.shape[0] == 1:  # (1, H, W) or (1, 1, H, W) maps
        tensor = tensor[0]
    if tensor.ndim != 2:
        msg = f"each anomaly map must be H x W (or 1 x H x W), got shape {tuple(tensor.shape)}"
        raise ValueError(msg)
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        tensor = F.interpolate(tensor[None, None], size=shape, mode="bilinear", align_corners=False)[0, 0]
    values = tensor.numpy()
    if not np.isfinite(values).all():
        msg = "anomaly maps contain NaN or Inf values"
        raise ValueError(msg)
    return values


def spro_curve(
    maps: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    regions: Sequence[Sequence[Region]],
    fpr_limit: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, mean sPRO) at every relevant threshold, FPR increasing, starting at (0, 0).

    Args:
        maps: N anomaly maps (H x W each, or an N x H x W array/tensor).
        regions: ``regions[i]`` lists ``(bool mask, saturation_area)`` of image i; an empty list marks an
            anomaly-free image.
        fpr_limit: Only thresholds up to the first FPR above this are needed (and computed).
    """
    if len(maps) != len(regions):
        msg = f"got {len(maps)} maps but {len(regions)} region lists"
        raise ValueError(msg)
    if not 0.0 < fpr_limit <= 1.0:
        msg = f"fpr_limit must be in (0, 1], got {fpr_limit}"
        raise ValueError(msg)
    good_values, region_values, saturation = [], [], []
    for index, (anomaly_map, image_regions) in enumerate(zip(maps, regions, strict=True)):
        if not image_regions:
            good_values.append(_as_numpy_map(anomaly_map, None).ravel())
            continue
        shape = np.asarray(image_regions[0][0]).shape
        values = _as_numpy_map(anomaly_map, shape)
        for mask, area in image_regions:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != shape:
                msg = f"image {index}: region masks have different shapes {shape} and {mask.shape}"
                raise ValueError(msg)
            if not mask.any() or area <= 0:
                msg = f"image {index}: a region is empty or has a non-positive saturation area ({area})"
                raise ValueError(msg)
            region_values.append(np.sort(values[mask]))
            saturation.append(float(area))
    if not good_values:
        msg = "sPRO needs at least one anomaly-free image (its FPR is measured on them only)"
        raise ValueError(msg)
    if not region_values:
        msg = "sPRO needs at least one anomalous image with a defect region"
        raise ValueError(msg)
    good = np.sort(np.concatenate(good_values))
    # Thresholds from the highest value down to the first one whose FPR exceeds the limit.
    stop_index = min(len(good) - 1, int(np.floor(fpr_limit * len(good))))
    lowest = good[len(good) - 1 - stop_index]
    candidates = [good[good >= lowest]] + [v[v >= lowest] for v in region_values]
    thresholds = np.unique(np.concatenate(candidates))[::-1]  # descending
    fpr = (len(good) - np.searchsorted(good, thresholds, side="left")) / len(good)
    spro = np.zeros_like(thresholds, dtype=np.float64)
    for values, area in zip(region_values, saturation, strict=True):
        hits = len(values) - np.searchsorted(values, thresholds, side="left")
        spro += np.minimum(1.0, hits / area)
    spro /= len(region_values)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], spro])


def au_spro(
    maps: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    regions: Sequence[Sequence[Region]],
    fpr_limit: float = 0.05,
) -> float:
    """Area under the sPRO curve up to ``fpr_limit``, normalised by ``fpr_limit`` (1.0 is perfect)."""
    fpr, spro = spro_curve(maps, regions, fpr_limit)
    return integrate_to_limit(fpr, spro, fpr_limit) / fpr_limit


def integrate_to_limit(fpr: np.ndarray, values: np.ndarray, limit: float) -> float:
    """Trapezoid area under ``values(fpr)`` (fpr non-decreasing) on ``[0, limit]``, interpolating at ``limit``."""
    inside = fpr <= limit
    x, y = fpr[inside], values[inside]
    if x[-1] < limit and inside.sum() < len(fpr):
        after = int(np.argmax(~inside))
        x0, x1, y0, y1 = fpr[after - 1], fpr[after], values[after - 1], values[after]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0) if x1 > x0 else y1
        x, y = np.append(x, limit), np.append(y, y_limit)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def rank_auroc(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Image AUROC from ranks (Mann-Whitney U, ties count half), for scores on any scale.

    torchmetrics' (and so anomalib's) AUROC applies a sigmoid to scores outside [0, 1], per update: raw scores
    above ~17 then all become 1.0 in float32 and the AUROC collapses towards 0.5, silently. Ranks have no scale.
    NaN when one class is absent.
    """
    values = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores).double()
    values = values.detach().reshape(-1).cpu()
    target = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    target = target.detach().reshape(-1).cpu().bool()
    if values.numel() != target.numel():
        msg = f"scores and labels differ in length: {values.numel()} vs {target.numel()}"
        raise ValueError(msg)
    if not torch.isfinite(values).all():
        msg = "image scores contain NaN or Inf values"
        raise ValueError(msg)
    positives = int(target.sum())
    negatives = int(target.numel()) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    u_statistic = float(_midranks(values)[target].sum()) - positives * (positives + 1) / 2.0
    return u_statistic / (positives * negatives)


def _midranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D float64 tensor, each run of ties given its mean rank."""
    order = torch.argsort(values)
    _, inverse, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, dim=0).double()
    average_rank = ends - (counts.double() - 1.0) / 2.0
    ranks = torch.empty_like(values)
    ranks[order] = average_rank[inverse]
    return ranks


def paired_auroc_difference(
    scores_a: torch.Tensor, scores_b: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """(AUROC of ``scores_a`` minus that of ``scores_b``, its standard error) for two scores of the same images.

    DeLong, DeLong and Clarke-Pearson (Biometrics 1988): each AUROC is the mean over positives (or over negatives) of
    a per-image component, the fraction of the other class it out-ranks (ties half); the difference's variance is that
    of the components' differences, over positives divided by their count plus over negatives likewise. Pairing
    matters: two scores of the same images are strongly correlated, so their difference varies far less than either
    AUROC. Components come from ranks, so the cost is a sort, not positives x negatives comparisons.
    """
    target = torch.as_tensor(labels).detach().reshape(-1).cpu().bool()
    positives, negatives = int(target.sum()), int((~target).sum())
    if positives < 2 or negatives < 2:
        msg = f"a paired AUROC difference needs at least 2 images of each class, got {positives} and {negatives}"
        raise ValueError(msg)
    components = []
    for scores in (scores_a, scores_b):
        values = torch.as_tensor(scores).detach().reshape(-1).cpu().double()
        if values.numel() != target.numel():
            msg = f"scores and labels differ in length: {values.numel()} vs {target.numel()}"
            raise ValueError(msg)
        overall, within_positives, within_negatives = (
            _midranks(values),
            _midranks(values[target]),
            _midranks(values[~target]),
        )
        # a positive's component: negatives below it; a negative's: positives above it
        positive_part = (overall[target] - within_positives) / negatives
        negative_part = 1.0 - (overall[~target] - within_negatives) / positives
        components.append((positive_part, negative_part))
    positive_difference = components[0][0] - components[1][0]
    negative_difference = components[0][1] - components[1][1]
    difference = float(positive_difference.mean())
    variance = float(positive_difference.var() / positives + negative_difference.var() / negatives)
    return difference, max(variance, 0.0) ** 0.5
