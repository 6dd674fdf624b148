"""Streaming sPRO for anomalib's ``Evaluator``: memory bounded by the number of thresholds, not of images.

The real LOCO test set is ~1,500 maps of up to 1600x1100 pixels. Instead of keeping maps, each update folds its
images into two fixed-size vectors over a threshold grid:

- ``good_histogram[b]``: anomaly-free pixels whose value falls in bin ``b`` (the FPR comes from its cumulative sum);
- ``spro_sum[b]``: the sum over all regions seen so far of ``min(1, hits_r(>= bin b) / s_r)``.

The bins are the top ``key_bits`` bits of an order-preserving integer view of float32 values, i.e. a logarithmic
grid covering every float (with the default 18 bits: 2^9 steps per power of two, a relative resolution of 0.14 %).
The result is the exact AU-sPRO of the maps rounded down to that grid; tests check it against the exact functional
form. States are sums, so DDP ranks are combined exactly (images repeated by a ``DistributedSampler``'s padding
would be counted twice, as for every torchmetrics metric).
"""

from collections.abc import Sequence

import numpy as np
import torch
from anomalib.metrics import AnomalibMetric
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalib_npgmf.ground_truth import anomaly_type_of, load_defect_regions

from .functional import _as_numpy_map, integrate_to_limit, rank_auroc


def float_keys(values: np.ndarray, key_bits: int) -> np.ndarray:
    """Monotone non-decreasing integer keys in ``[0, 2**key_bits)`` of float values."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    ordered = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return (ordered >> np.uint32(32 - key_bits)).astype(np.int64)


class StreamingSPRO(Metric):
    """AU-sPRO over a stream of (anomaly map, regions) pairs; see the module docstring.

    Args:
        fpr_limit: Upper FPR limit of the integral (LOCO: 0.05).
        key_bits: Threshold grid resolution (bins = 2**key_bits).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, fpr_limit: float = 0.05, key_bits: int = 18, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < fpr_limit <= 1.0:
            msg = f"fpr_limit must be in (0, 1], got {fpr_limit}"
            raise ValueError(msg)
        if not 8 <= key_bits <= 24:
            msg = f"key_bits must be between 8 and 24, got {key_bits}"
            raise ValueError(msg)
        self.fpr_limit = fpr_limit
        self.key_bits = key_bits
        bins = 2**key_bits
        self.add_state("good_histogram", torch.zeros(bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("spro_sum", torch.zeros(bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("region_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update_image(self, anomaly_map: np.ndarray | torch.Tensor, regions: Sequence[tuple[np.ndarray, float]]) -> None:
        """Fold one image in: ``regions`` empty for an anomaly-free image."""
        bins = 2**self.key_bits
        if not regions:
            keys = float_keys(_as_numpy_map(anomaly_map, None).ravel(), self.key_bits)
            self.good_histogram += torch.from_numpy(np.bincount(keys, minlength=bins).astype(np.float64))
            return
        shape = np.asarray(regions[0][0]).shape
        values = _as_numpy_map(anomaly_map, shape)
        contribution = np.zeros(bins, dtype=np.float64)
        for mask, area in regions:
            keys = float_keys(values[np.asarray(mask, dtype=bool)], self.key_bits)
            if keys.size == 0 or area <= 0:
                msg = f"a region is empty or has a non-positive saturation area ({area})"
                raise ValueError(msg)
            hits_at_or_above = np.cumsum(np.bincount(keys, minlength=bins)[::-1])[::-1]
            contribution += np.minimum(1.0, hits_at_or_above / float(area))
        self.spro_sum += torch.from_numpy(contribution)
        self.region_count += len(regions)

    def update(self, anomaly_maps: torch.Tensor, regions: Sequence[Sequence[tuple[np.ndarray, float]]]) -> None:
        """Fold a batch in: maps (N, [1,] H, W) and each image's regions."""
        for anomaly_map, image_regions in zip(anomaly_maps, regions, strict=True):
            self.update_image(anomaly_map, image_regions)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(fpr, mean sPRO) at every bin from the top down, starting at (0, 0)."""
        good = self.good_histogram.cpu().numpy()
        if good.sum() == 0:
            msg = "sPRO needs at least one anomaly-free image (its FPR is measured on them only)"
            raise ValueError(msg)
        if float(self.region_count) == 0:
            msg = "sPRO needs at least one anomalous image with a defect region"
            raise ValueError(msg)
        fpr = np.cumsum(good[::-1]) / good.sum()
        spro = self.spro_sum.cpu().numpy()[::-1] / float(self.region_count)
        return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], spro])

    def compute(self) -> torch.Tensor:
        """AU-sPRO up to ``fpr_limit``, normalised to [0, 1]."""
        fpr, spro = self.curve()
        return torch.tensor(integrate_to_limit(fpr, spro, self.fpr_limit) / self.fpr_limit, dtype=torch.float64)


class PathSPRO(StreamingSPRO):
    """:class:`StreamingSPRO` fed with (maps, image paths): regions come from the LOCO ground truth on disk.

    With ``anomaly_type`` set, only good images and images of that type are used, as the LOCO papers report.
    """

    def __init__(self, anomaly_type: str | None = None, fpr_limit: float = 0.05, **kwargs) -> None:
        if anomaly_type not in {None, "logical", "structural"}:
            msg = f"anomaly_type must be None, 'logical' or 'structural', got {anomaly_type!r}"
            raise ValueError(msg)
        super().__init__(fpr_limit=fpr_limit, **kwargs)
        self.anomaly_type = anomaly_type

    def update(self, anomaly_maps: torch.Tensor, image_paths: Sequence[str]) -> None:  # type: ignore[override]
        """Fold a batch in, reading each image's regions by its path (good images: none)."""
        for anomaly_map, path in zip(anomaly_maps, image_paths, strict=True):
            kind = anomaly_type_of(path)
            if kind != "good" and self.anomaly_type not in {None, kind}:
                continue
            regions = [(r.mask, r.saturation_area) for r in load_defect_regions(path)] if kind != "good" else []
            self.update_image(anomaly_map, regions)


class SPRO(AnomalibMetric, PathSPRO):
    """AU-sPRO as an anomalib metric: ``Evaluator(test_metrics=[SPRO(anomaly_type="logical")])``."""

    default_fields = ("anomaly_map", "image_path")

    def __init__(self, anomaly_type: str | None = None, fpr_limit: float = 0.05, **kwargs) -> None:
        super().__init__(anomaly_type=anomaly_type, fpr_limit=fpr_limit, **kwargs)
        self.name = "AU-sPRO" + (f"_{anomaly_type}" if anomaly_type else "")


class PathSplitAUROC(Metric):
    """Image AUROC over the good images and one anomaly type only (LOCO's logical / structural split).

    Computed from ranks (:func:`~.functional.rank_auroc`), so raw scores of any scale give the right value;
    torchmetrics' ``BinaryAUROC`` would squash scores outside [0, 1] with a sigmoid, per batch. States are
    concatenated over DDP ranks.
    """

    full_state_update = False

    def __init__(self, anomaly_type: str, **kwargs) -> None:
        if anomaly_type not in {"logical", "structural"}:
            msg = f"anomaly_type must be 'logical' or 'structural', got {anomaly_type!r}"
            raise ValueError(msg)
        super().__init__(**kwargs)
        self.anomaly_type = anomaly_type
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, image_paths: Sequence[str]) -> None:  # type: ignore[override]
        """Keep good images and images of ``anomaly_type``; the label is "is of that type"."""
        kinds = [anomaly_type_of(path) for path in image_paths]
        keep = [i for i, kind in enumerate(kinds) if kind in {"good", self.anomaly_type}]
        if not keep:
            return
        target = torch.tensor([kinds[i] == self.anomaly_type for i in keep], dtype=torch.long)
        self.scores.append(torch.as_tensor(scores).detach().reshape(-1)[keep].double().cpu())
        self.targets.append(target)

    def compute(self) -> torch.Tensor:
        """The AUROC (NaN when good or ``anomaly_type`` images are missing)."""
        scores = dim_zero_cat(self.scores) if self.scores else torch.zeros(0, dtype=torch.float64)
        targets = dim_zero_cat(self.targets) if self.targets else torch.zeros(0, dtype=torch.long)
        return torch.tensor(rank_auroc(scores, targets))


class SplitImageAUROC(AnomalibMetric, PathSplitAUROC):
    """:class:`PathSplitAUROC` as an anomalib metric (fields ``pred_score``, ``image_path``)."""

    default_fields = ("pred_score", "image_path")

    def __init__(self, anomaly_type: str, **kwargs) -> None:
        super().__init__(anomaly_type=anomaly_type, **kwargs)
        self.name = f"image_AUROC_{anomaly_type}"


def loco_test_metrics(fpr_limit: float = 0.05) -> list[AnomalibMetric]:
    """The LOCO metrics for ``Evaluator(test_metrics=...)``: image AUROC and AU-sPRO, logical and structural."""
    return [
        SplitImageAUROC("logical"),
        SplitImageAUROC("structural"),
        SPRO("logical", fpr_limit=fpr_limit),
        SPRO("structural", fpr_limit=fpr_limit),
    ]
