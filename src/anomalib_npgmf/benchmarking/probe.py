"""A no-training baseline row: one Gaussian over pooled random-init CNN features, Mahalanobis distance as the score.

Why it is in the accuracy table (issue 18): with nothing learned — a random-init resnet18, its first three stages
mean-pooled per image (whole image, or each cell of a 2x2 grid), a seeded random subset of 256 dimensions, one
Ledoit-Wolf Gaussian fitted on the training normals — it beat every trained model on logical anomalies of scenes with
freely placed parts. A model that claims logical reasoning must at least match it, so it is measured beside them
through the same ``Engine.fit`` and LOCO scoring path.

It has no localisation: its anomaly map is the image score everywhere (the map exists only because the shared
scoring path reads one), so its AU-sPRO columns say nothing about where a defect is.
"""

from collections.abc import Callable

import timm
import torch
from anomalib import LearningType
from anomalib.data import Batch, InferenceBatch
from anomalib.models.components import AnomalibModule, MemoryBankMixin
from anomalib.post_processing import PostProcessor
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn

from anomalib_npgmf.models.npgmf.components.global_prior import ledoit_wolf_covariance, pooled_descriptor

STAGES = (1, 2, 3)  # timm feature indices of ResNet's layer1..layer3


class PooledGaussianProbeModel(nn.Module):
    """Frozen random-init encoder -> pooled descriptor -> Mahalanobis distance to the training normals' Gaussian.

    Args:
        grid: Cells per side of the pooling grid (1 = whole-image channel means, 2 = means over a 2x2 grid).
        dims: Descriptor entries kept (a seeded random subset, as PaDiM reduces its embedding).
        seed: Seeds the encoder's init and the subset, so a row is reproducible whatever ran before it.
        backbone: timm CNN name (random init: nothing is downloaded).
    """

    def __init__(self, grid: int = 1, dims: int = 256, seed: int = 0, backbone: str = "resnet18") -> None:
        super().__init__()
        if grid < 1 or dims < 1:
            msg = f"the probe needs grid >= 1 and dims >= 1, got {grid} and {dims}"
            raise ValueError(msg)
        self.grid = int(grid)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=STAGES)
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        full = self.grid**2 * int(sum(self.encoder.feature_info.channels()))
        generator = torch.Generator().manual_seed(seed)
        subset = torch.randperm(full, generator=generator)[: min(dims, full)].sort().values
        self.register_buffer("feature_index", subset)
        dim = self.feature_index.numel()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("precision", torch.eye(dim))
        self.descriptors: list[torch.Tensor] = []
        self.encoder.eval()

    def train(self, mode: bool = True) -> "PooledGaussianProbeModel":
        """Keep the encoder in eval mode: batch statistics would make a descriptor depend on its batch-mates."""
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def descriptor(self, images: torch.Tensor) -> torch.Tensor:
        """(B, dims) pooled descriptor of each image."""
        full = pooled_descriptor(list(self.encoder(images)), self.grid)
        return full.index_select(1, self.feature_index)

    @torch.no_grad()
    def fit(self) -> None:
        """Fit mean and Ledoit-Wolf precision on the descriptors collected from the training normals."""
        if not self.descriptors:
            msg = "the probe saw no training images"
            raise RuntimeError(msg)
        samples = torch.cat(self.descriptors).double()
        self.descriptors = []
        if samples.shape[0] < 2:
            msg = f"the probe needs at least 2 training images, got {samples.shape[0]}"
            raise ValueError(msg)
        covariance = ledoit_wolf_covariance(samples)
        factor, info = torch.linalg.cholesky_ex(covariance)
        precision = torch.cholesky_inverse(factor) if int(info) == 0 else torch.linalg.pinv(covariance, hermitian=True)
        self.mean.copy_(samples.mean(dim=0).to(self.mean.dtype))
        self.precision.copy_(precision.to(self.precision.dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Training: collect descriptors. Inference: the distance as the image score and as a constant map."""
        descriptor = self.descriptor(images)
        if self.training:
            self.descriptors.append(descriptor.cpu())
            return descriptor
        centred = (descriptor - self.mean).double()
        score = torch.sqrt(((centred @ self.precision.double()) * centred).sum(dim=1).clamp_min(0.0)).float()
        anomaly_map = score[:, None, None, None].expand(-1, 1, *images.shape[-2:]).contiguous()
        return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)


class OnePassBaseline(MemoryBankMixin, AnomalibModule):
    """A no-training baseline as an anomalib model, like anomalib's Padim: one pass over the training normals feeds
    ``self.model`` (its training-mode forward collects), ``self.model.fit()`` fits it, its eval forward scores.
    Subclasses set ``self.model`` after ``super().__init__`` (an init argument would be pickled into the checkpoint's
    hyperparameters)."""

    model: nn.Module

    @staticmethod
    def configure_optimizers() -> None:
        """Nothing is trained."""
        return

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> torch.Tensor:
        """Collect the batch."""
        del args, kwargs
        self.model(batch.image)
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def fit(self) -> None:
        """Fit the baseline (called once by anomalib's memory-bank hooks after the training pass)."""
        self.model.fit()

    def validation_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        """Score the batch."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    @property
    def trainer_arguments(self) -> dict[str, int | float]:
        """One pass over the training data, no sanity validation."""
        return {"max_epochs": 1, "val_check_interval": 1.0, "num_sanity_val_steps": 0, "devices": 1}

    @property
    def learning_type(self) -> LearningType:
        """One-class: trained on normal images only."""
        return LearningType.ONE_CLASS

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        """anomalib's default post-processing (score normalisation), as the baselines get."""
        return PostProcessor()


class PooledGaussianProbe(OnePassBaseline):
    """The pooled-Gaussian probe as an anomalib model."""

    def __init__(
        self,
        grid: int = 1,
        dims: int = 256,
        seed: int = 0,
        backbone: str = "resnet18",
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: bool = True,
        visualizer: bool = False,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        self.model = PooledGaussianProbeModel(grid=grid, dims=dims, seed=seed, backbone=backbone)


def probe_builder(grid: int) -> Callable[[int, bool], PooledGaussianProbe]:
    """An accuracy-harness builder ``(image_size, pretrained) -> model``; the run's seed (set by the harness through
    ``seed_everything`` just before) seeds the encoder and the subset."""

    def build(image_size: int, pretrained: bool) -> PooledGaussianProbe:
        if pretrained:
            msg = "the pooled-Gaussian probe is a random-init baseline; it has no pretrained variant"
            raise RuntimeError(msg)
        return PooledGaussianProbe(
            grid=grid,
            seed=torch.initial_seed() % 2**31,
            pre_processor=PooledGaussianProbe.configure_pre_processor((image_size, image_size)),
        )

    return build


# accuracy-harness rows: name -> (builder, trained for --epochs?)
PROBE_ROWS: dict[str, tuple[Callable[[int, bool], PooledGaussianProbe], bool]] = {
    "probe_mean": (probe_builder(1), False),
    "probe_grid2": (probe_builder(2), False),
}
