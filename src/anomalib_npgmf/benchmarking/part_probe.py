"""A second no-training baseline row: statistics of the image's connected parts, no neural network at all.

Why it is in the accuracy table (issue 18): on ``screws`` every statistic Npgmf has (per position, per cell, pooled
over the image) stays below the 0.90 logical target, and the per-defect table blames missing / extra parts, kinds
and lengths. This probe tests the opposite hypothesis with the bluntest tool: cut the image into its parts
(pixels far in colour from the image's median colour, connected components) and describe each part by log area,
log length, log width (from its second moments) and mean colour. The training normals' parts are clustered (k-means)
into part kinds; an image becomes the count of its parts per kind, its number of parts and its least typical part's
distance to the nearest kind; one Ledoit-Wolf Gaussian over those vectors scores an image by Mahalanobis distance.
If it beats Npgmf, the scenes' rules are within reach of part-level counting and Npgmf lacks a part-level prior.

It is no model for real data: the median-colour cut assumes parts on a plain, uniform background (true of the
generated scenes, not of MVTec LOCO's juice bottles or splicing connectors). Its map paints each part with that
part's distance to the nearest kind (background 0), so its AU-sPRO says how well odd parts are picked out.

Its three settings were chosen on ``box`` only (data seeds 0 / 1, 128 px, the mean of logical and structural image
AUROC over colour thresholds 20 / 40 / 60 and 4 / 6 / 8 / 12 kinds): a threshold of 40 (of 255), 8 kinds (12 tied:
0.9517 against 0.9514, so the fewer), parts of at least 4 px at 128 px (scaled with the image's area).
"""

from collections.abc import Callable

import numpy as np
import torch
from anomalib.data import InferenceBatch
from anomalib.pre_processing import PreProcessor
from sklearn.cluster import KMeans
from torch import nn
from torchvision.transforms.v2 import Resize

from anomalib_npgmf.models.npgmf.components.global_prior import ledoit_wolf_covariance
from anomalib_npgmf.models.npgmf.components.part_prior import PART_FEATURES, cut_parts

from .probe import OnePassBaseline


def image_parts(images: torch.Tensor, threshold: float, min_area: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each of (B, 3, H, W) RGB images in [0, 1]: its parts' (P, 6) descriptors and its (H, W) label map (0 =
    background and specks, part ``i`` is label ``i + 1``), by the part prior's own cut (:func:`cut_parts`, in float64
    here), so the probe and the prior it led to count the same parts."""
    labels, descriptors, valid = cut_parts(images.detach().cpu().double(), threshold, min_area)
    found = []
    for label_map, rows, keep in zip(labels, descriptors, valid, strict=True):
        slots = keep.nonzero().reshape(-1)
        numbering = torch.zeros(keep.shape[0], dtype=torch.long)
        numbering[slots] = torch.arange(1, len(slots) + 1)
        found.append((rows[slots].numpy(), numbering[label_map.long()].numpy()))
    return found


class PartStatisticsProbeModel(nn.Module):
    """Parts -> kinds (k-means on the training normals' parts) -> per-image counts -> Mahalanobis distance.

    Args:
        kinds: Clusters the training parts are grouped into.
        threshold: Colour distance (RGB in [0, 1]) from the image's median colour that makes a pixel part of a part.
        min_area: Smallest part kept, in pixels (smaller components are noise).
        seed: Seeds k-means, so a row is reproducible.
    """

    def __init__(self, kinds: int = 8, threshold: float = 40 / 255, min_area: int = 4, seed: int = 0) -> None:
        super().__init__()
        if kinds < 1 or threshold <= 0 or min_area < 1:
            msg = (
                "the part probe needs kinds >= 1, threshold > 0 and min_area >= 1, "
                f"got {kinds}, {threshold}, {min_area}"
            )
            raise ValueError(msg)
        self.kinds, self.threshold, self.min_area, self.seed = int(kinds), float(threshold), int(min_area), int(seed)
        dim = self.kinds + 2
        self.register_buffer("centres", torch.zeros(self.kinds, PART_FEATURES, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(PART_FEATURES, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("precision", torch.eye(dim, dtype=torch.float64))
        self.collected: list[np.ndarray] = []  # the training normals' parts, one array per image

    def parts(self, images: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each image's part descriptors and label map."""
        return image_parts(images, self.threshold, self.min_area)

    def novelty(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each part's kind and its distance to that kind's centre (in training-spread units)."""
        if len(descriptors) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        scaled = descriptors / self.scale.numpy()
        distances = np.linalg.norm(scaled[:, None, :] - self.centres.numpy()[None], axis=-1)
        return distances.argmin(axis=1), distances.min(axis=1)

    def image_vector(self, descriptors: np.ndarray) -> np.ndarray:
        """Parts per kind, number of parts, the least typical part's distance to its kind."""
        kind, distance = self.novelty(descriptors)
        counts = np.bincount(kind, minlength=self.kinds).astype(np.float64)
        return np.concatenate([counts, [len(descriptors), distance.max(initial=0.0)]])

    @torch.no_grad()
    def fit(self) -> None:
        """Cluster the training parts into kinds, then fit the Gaussian over the training images' vectors."""
        if len(self.collected) < 2:
            msg = f"the part probe needs at least 2 training images, got {len(self.collected)}"
            raise ValueError(msg)
        every_part = np.concatenate(self.collected)
        if len(every_part) < self.kinds:
            msg = (
                f"the part probe found {len(every_part)} parts in the training images, fewer than kinds={self.kinds}: "
                "the images have no parts on a plain background"
            )
            raise ValueError(msg)
        self.scale.copy_(torch.from_numpy(every_part.std(axis=0) + 1e-6))
        kmeans = KMeans(self.kinds, n_init=10, random_state=self.seed).fit(every_part / self.scale.numpy())
        self.centres.copy_(torch.from_numpy(kmeans.cluster_centers_))
        vectors = torch.from_numpy(np.stack([self.image_vector(parts) for parts in self.collected]))
        self.collected = []
        covariance = ledoit_wolf_covariance(vectors)
        self.mean.copy_(vectors.mean(dim=0))
        self.precision.copy_(torch.linalg.pinv(covariance, hermitian=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Training: collect parts. Inference: the Mahalanobis distance, and each part painted with its novelty."""
        found = self.parts(images)
        if self.training:
            self.collected.extend(descriptors for descriptors, _ in found)
            return torch.zeros(len(found))
        scores, maps = [], []
        for descriptors, labels in found:
            centred = torch.from_numpy(self.image_vector(descriptors)) - self.mean
            scores.append(torch.sqrt((centred @ self.precision @ centred).clamp_min(0.0)))
            painted = np.concatenate([[0.0], self.novelty(descriptors)[1]])[labels]
            maps.append(torch.from_numpy(painted))
        anomaly_map = torch.stack(maps)[:, None].float().to(images.device)
        return InferenceBatch(pred_score=torch.stack(scores).float().to(images.device), anomaly_map=anomaly_map)


class PartStatisticsProbe(OnePassBaseline):
    """The part probe as an anomalib model."""

    def __init__(
        self,
        kinds: int = 8,
        threshold: float = 40 / 255,
        min_area: int = 4,
        seed: int = 0,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: bool = True,
        visualizer: bool = False,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        self.model = PartStatisticsProbeModel(kinds=kinds, threshold=threshold, min_area=min_area, seed=seed)

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize only: the colour threshold is in RGB units, so no ImageNet normalisation."""
        return PreProcessor(transform=Resize(image_size or (256, 256), antialias=True))


def part_probe_builder() -> Callable[[int, bool], PartStatisticsProbe]:
    """An accuracy-harness builder ``(image_size, pretrained) -> model``; the smallest part scales with image area."""

    def build(image_size: int, pretrained: bool) -> PartStatisticsProbe:
        if pretrained:
            msg = "the part probe learns nothing and has no network: it has no pretrained variant"
            raise RuntimeError(msg)
        return PartStatisticsProbe(
            min_area=max(1, round(4 * (image_size / 128) ** 2)),
            seed=torch.initial_seed() % 2**31,
            pre_processor=PartStatisticsProbe.configure_pre_processor((image_size, image_size)),
        )

    return build
