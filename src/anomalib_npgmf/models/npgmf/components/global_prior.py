"""Global normality prior: a Gaussian over image-level descriptors of normal images.

Counting and size rules ("two of these, one bar that long") are global: a reconstruction error is local and blind to
a part that is missing at a random position. [ours] M_LAD therefore also scores each image by the Mahalanobis
distance of its globally pooled encoder features (levels 2-4, mean-pooled) to the normal training images.
Measured on a synthetic LOCO-like scene with freely placed parts (random-init resnet18): this global distance alone
gave logical image AUROC 0.98 where the local reconstruction map gave 0.60.

The covariance is shrunk with the Ledoit-Wolf formula (few images, many channels). Statistics are computed from the
de-duplicated descriptors of all DDP ranks, so N ranks fit the same Gaussian as one process.
"""

from collections.abc import Sequence

import torch
from torch import nn


def pooled_descriptor(levels: Sequence[torch.Tensor], grid: int = 1) -> torch.Tensor:
    """(B, grid² · sum C_k): channel means of each level over each cell of a ``grid`` x ``grid`` partition.

    Cell bounds are Python ints from the static shapes (adaptive pooling's floor/ceil rule), so the exported graph is
    plain slicing and means at any input size.
    """
    parts = []
    for level in levels:
        for top, bottom in cell_bounds(int(level.shape[-2]), grid):
            for left, right in cell_bounds(int(level.shape[-1]), grid):
                parts.append(level[..., top:bottom, left:right].mean(dim=(-2, -1)))
    return torch.cat(parts, dim=1)


def cell_bounds(size: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) of ``parts`` pooling cells along a side of ``size`` (adaptive pooling's floor / ceil rule: where
    ``size`` does not divide, neighbouring cells share a pixel)."""
    return [((index * size) // parts, -((-(index + 1) * size) // parts)) for index in range(parts)]


def ledoit_wolf_covariance(samples: torch.Tensor) -> torch.Tensor:
    """Ledoit-Wolf shrunk covariance of ``samples`` (..., N, D), computed in float64 (batched over leading dims)."""
    x = samples.double()
    x = x - x.mean(dim=-2, keepdim=True)
    count, dim = x.shape[-2:]
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    empirical = x.transpose(-1, -2) @ x / count
    mu = torch.diagonal(empirical, dim1=-2, dim2=-1).sum(-1) / dim
    delta = ((empirical - mu[..., None, None] * eye) ** 2).sum(dim=(-2, -1)) / dim
    squared = x**2
    beta = ((squared.transpose(-1, -2) @ squared) / count - empirical**2).sum(dim=(-2, -1)) / (dim * count)
    shrinkage = torch.where(delta > 0, beta / delta.clamp_min(1e-300), torch.ones_like(delta)).clamp(0.0, 1.0)
    shrinkage = shrinkage[..., None, None]
    return (1.0 - shrinkage) * empirical + shrinkage * mu[..., None, None] * eye


def precision_from_covariance(covariance: torch.Tensor) -> torch.Tensor:
    """Inverse of (batched) covariance matrices: Cholesky when positive definite, else the pseudo-inverse.

    Ledoit-Wolf shrinkage makes the covariance positive definite whenever the features vary at all. Measured on the
    2-core machine, 2048x2048 float64, while other jobs ran: ``pinv`` (an eigendecomposition) 30 s,
    ``cholesky_inverse`` 46 s (MKL's threaded ``potri``; 1 s with one thread), ``cholesky_solve`` against the identity
    0.8 s. ``pinv`` stays as the fallback for degenerate (e.g. constant) features.
    """
    factor, info = torch.linalg.cholesky_ex(covariance)
    if bool((info == 0).all()):
        identity = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
        return torch.cholesky_solve(identity.expand_as(covariance), factor)
    return torch.linalg.pinv(covariance, hermitian=True)


def mahalanobis_squared(centred: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``x^T P x`` over the last dim of ``centred`` (..., D) with ``precision`` (..., D, D), always in float32.

    Under bf16 autocast (``--trainer.precision bf16-mixed``) the matmul would run in bf16: with precision entries in
    the thousands the distance moved by 0.18 on a tiny training set, and the quantile normaliser amplified that to
    score changes of ~60 (measured, ``benchmarks/speed/RESULTS.md`` finding 5). Outside autocast this is a no-op.
    """
    device = centred.device.type
    if torch.is_autocast_enabled(device):
        with torch.autocast(device_type=device, enabled=False):
            return mahalanobis_squared(centred.float(), precision.float())
    return ((centred.unsqueeze(-2) @ precision).squeeze(-2) * centred).sum(dim=-1)


class CategoryGaussians(nn.Module):
    """One Gaussian (mean, precision) per category of an image-level descriptor, and whether they are fitted: the
    buffers an image-level prior scores by, in one place."""

    def __init__(self, num_categories: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_categories, dim))
        self.register_buffer("precision", torch.eye(dim).repeat(num_categories, 1, 1))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def num_categories(self) -> int:
        """Number of category Gaussians."""
        return int(self.mean.shape[0])


class GlobalNormalityPrior(CategoryGaussians):
    """Mahalanobis distance of an image's pooled features to the normal images' Gaussian (one per category).

    With several categories (one model for many) each category has its own Gaussian; an image's distance is the one
    to the nearest category, and that category is the image's route (:meth:`route`): the exported graph finds the
    category by itself, no label needed at inference.

    The descriptor is the channel means of levels 2-4 over each cell of a 2x2 grid: where parts are, not only how
    much of them there is. [ours] Measured on the generated scenes with the frozen random-init resnet18 alone
    (3 encoder seeds): logical image AUROC 0.84 (box) / 0.87 (pins) with whole-image means, 0.93 / 0.94 with 2x2
    cells; 3x3 and 4x4 cells were worse on one scene or the other. Wide backbones are capped at ``max_dim``
    descriptor entries (a seeded random subset, PaDiM's reduction) so the precision matrix stays small.

    Args:
        level_channels: Channels of the pooled encoder levels.
        num_categories: Gaussians held (1 unless the model is trained on several categories).
        grid: Cells per side of the pooling grid (1 = whole-image means).
        max_dim: Largest descriptor kept (``grid² · sum(level_channels)`` above it is subsampled).
        width: Entries of the full descriptor, for a subclass whose :meth:`descriptor` is not the pooled means.
    """

    def __init__(
        self,
        level_channels: Sequence[int],
        num_categories: int = 1,
        grid: int = 2,
        max_dim: int = 2048,
        width: int | None = None,
    ) -> None:
        if grid < 1 or max_dim < 1:
            msg = f"global prior needs grid >= 1 and max_dim >= 1, got {grid} and {max_dim}"
            raise ValueError(msg)
        full = int(width) if width is not None else int(grid) ** 2 * int(sum(level_channels))
        dim = min(full, int(max_dim))
        super().__init__(num_categories, dim)
        self.grid = int(grid)
        generator = torch.Generator().manual_seed(0)
        index = torch.arange(full) if dim == full else torch.randperm(full, generator=generator)[:dim].sort().values
        self.register_buffer("feature_index", index)

    def descriptor(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, D) descriptor of each image (what :meth:`fit` is fitted on)."""
        full = pooled_descriptor(levels, self.grid)
        return full if self.feature_index.numel() == full.shape[1] else full.index_select(1, self.feature_index)

    def samples(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """What :meth:`fit` is fitted on, one row per image (the common interface of the fitted priors)."""
        return self.descriptor(levels)

    @torch.no_grad()
    def fit(self, descriptors: torch.Tensor, category_index: torch.Tensor | None = None) -> None:
        """Fit mean and shrunk precision per category on (N, D) descriptors of normal images (>= 2 per category)."""
        dim = self.mean.shape[1]
        check_normal_samples(descriptors, dim, "global prior", "descriptors")
        index = checked_category_index(category_index, descriptors.shape[0], self.num_categories)
        for category in range(self.num_categories):
            samples = descriptors[index == category]
            if samples.shape[0] < 2:
                msg = (
                    f"global prior needs at least 2 normal images per category with {dim}-d descriptors; category "
                    f"#{category} has {samples.shape[0]}"
                )
                raise ValueError(msg)
            covariance = ledoit_wolf_covariance(samples)
            self.mean[category] = samples.double().mean(dim=0).to(self.mean.dtype)
            self.precision[category] = precision_from_covariance(covariance).to(self.precision.dtype)
        self.fitted.fill_(True)

    def distances(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, K) Mahalanobis distance of each image to each category's Gaussian (0 before fitting)."""
        centred = self.descriptor(levels).unsqueeze(1) - self.mean  # (B, K, D)
        squared = mahalanobis_squared(centred, self.precision)
        return torch.sqrt(torch.clamp(squared, min=0.0)) * self.fitted.to(squared.dtype)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B,) distance of each image to its nearest category's Gaussian."""
        return self.distances(levels).amin(dim=1)

    @staticmethod
    def route(distances: torch.Tensor) -> torch.Tensor:
        """(B,) index of each image's nearest category, from :meth:`distances`."""
        return distances.argmin(dim=1)


def check_normal_samples(samples: torch.Tensor, width: int, prior: str, what: str) -> None:
    """Raise a clear error unless ``samples`` are finite (N, ``width``) rows of normal images."""
    if samples.ndim != 2 or samples.shape[1] != width:
        msg = f"{prior} needs (N, {width}) {what} of normal images, got {tuple(samples.shape)}"
        raise ValueError(msg)
    if not torch.isfinite(samples).all():
        msg = f"{prior}: the training images gave NaN/Inf features (check the input images)"
        raise ValueError(msg)


def checked_category_index(category_index: torch.Tensor | None, count: int, num_categories: int) -> torch.Tensor:
    """Checked (N,) category indices of fitted samples (all 0 for a one-category prior)."""
    if category_index is None:
        if num_categories > 1:
            msg = f"fitting a prior of {num_categories} categories needs each sample's category index"
            raise ValueError(msg)
        return torch.zeros(count, dtype=torch.long)
    index = torch.as_tensor(category_index).reshape(-1).long().cpu()
    if index.numel() != count or (count and (int(index.min()) < 0 or int(index.max()) >= num_categories)):
        msg = f"category indices must be {count} values in [0, {num_categories - 1}], got {index.tolist()[:10]}"
        raise ValueError(msg)
    return index
