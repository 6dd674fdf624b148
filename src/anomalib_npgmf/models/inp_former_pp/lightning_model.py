"""INP-Former++ (and plain INP-Former) as an anomalib model: ``anomalib train --model InpFormerPlusPlus ...``.

INP-Former (CVPR 2025, arXiv 2503.02424) with the official recipe, plus the INP-Former++ (arXiv 2506.03660) soft
coherence loss and residual learning; ``variant="inp_former"`` switches both off and reproduces INP-Former. See
``README.md`` beside this file for what the papers state, what we assume, and where anomalib's ``InpFormer`` differs.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_npgmf import InpFormerPlusPlus
    >>> model = InpFormerPlusPlus(backbone="vit_small_patch14_reg4_dinov2", pre_trained=False, image_size=128,
    ...                           crop_size=112, score_size=None)
    >>> Engine(max_epochs=2).train(model, datamodule=...)  # doctest: +SKIP
"""

import math
from collections.abc import Sequence
from typing import Any

from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch import Callback
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRSchedulerConfig

from anomalib_npgmf.models.common import (
    CheckedEvaluationSteps,
    PluginExportMixin,
    RankPreservingPostProcessing,
    VersionedCheckpoints,
    as_image_size,
    check_finite_images,
    image_seed,
    log_losses,
    plugin_callbacks,
)

from .components.augment import few_shot_augment
from .components.pre_processing import check_crop_size, check_patch_multiple, resize_crop_normalise
from .components.residual import pseudo_anomaly_seeds
from .components.schedule import check_schedule, paper_optimiser
from .loss import InpFormerLoss
from .torch_model import InpFormerPlusPlusModel

VARIANTS = {"inp_former_pp": True, "inp_former": False}  # variant -> INP-Former++ additions on by default


class InpFormerPlusPlus(
    VersionedCheckpoints, CheckedEvaluationSteps, PluginExportMixin, RankPreservingPostProcessing, AnomalibModule
):
    """INP-Former++: intrinsic normal prototypes from the test image guide a decoder that reconstructs only normality.

    Args:
        variant: ``"inp_former_pp"`` (soft coherence loss + residual learning) or ``"inp_former"`` (the CVPR model).
        backbone: timm DINOv2 ViT (paper: ``vit_base_patch14_reg4_dinov2``; CPU: ``vit_small_patch14_reg4_dinov2``).
        pre_trained: Use pretrained backbone weights (paper setting). Read from the local file ``backbone_weights``
            or ``$ANOMALIB_NPGMF_WEIGHTS_DIR``; a missing file fails at construction. ``False``: random init.
        backbone_weights: Local timm weights file of ``backbone`` (``.safetensors`` or a torch state dict).
        backbone_kwargs: Extra timm arguments (tests: ``{"depth": 4, "embed_dim": 64, "num_heads": 2}``).
        image_size: Side (or ``(H, W)``) images are resized to (paper: 448).
        crop_size: Side of the centre crop after resizing (paper: 392); ``None``: no crop. The model input must be a
            multiple of the ViT patch size (14).
        encoder_layers: Encoder blocks read (``None``: paper's 2..9, scaled to the backbone depth). The decoder has
            one block per entry.
        num_groups: Feature groups compared for the anomaly map (paper: 2).
        num_inps: INPs per image (paper: 6).
        soft_coherence: Soft INP coherence loss; ``None`` follows ``variant``.
        residual_learning: Residual head on encoder-decoder residuals; ``None`` follows ``variant``.
        coherence_weight: Weight of the coherence loss (paper: 0.2).
        coherence_temperature: Temperature of the soft coherence weights.
        mining_power: Soft-mining gradient re-weighting exponent (paper: 3).
        residual_loss_weight: Weight of the residual head's loss.
        residual_map_weight: Weight of the residual head's probability added to the cosine map.
        pseudo_noise_scale: Feature-noise strength of the residual head's pseudo-anomalies.
        learning_rate: Peak learning rate (paper: 1e-3).
        final_learning_rate: Learning rate at the end of the cosine (paper: 1e-4).
        weight_decay: StableAdamW weight decay (paper: 1e-4).
        warmup_steps: Linear warm-up in optimiser steps (paper: 100).
        gradient_clip_val: Gradient-norm clipping (paper: 0.1).
        few_shot_augment: Replace each training image by a random one of the official few-shot recipe's 22
            versions (rotations, shifts, flip, grey) -- for ``n_shots`` training.
        score_size: Side the map is resized to before blurring and scoring (paper's evaluation: 256); ``None``
            scores at the input size.
        blur_kernel_size: Gaussian blur kernel side (paper: 5).
        blur_sigma: Gaussian blur sigma (paper: 4).
        top_fraction: Image score = mean of this top fraction of map values (paper: 0.01).
        per_category_metrics: Add the per-category image AUROC table to ``test`` runs.
        pre_processor, post_processor, evaluator, visualizer: As in every anomalib model; the default post-processor
            is anomalib's with a normalisation that never ties two values (``RankPreservingPostProcessor``).
    """

    def __init__(
        self,
        variant: str = "inp_former_pp",
        backbone: str = "vit_base_patch14_reg4_dinov2",
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        image_size: int | Sequence[int] = 448,
        crop_size: int | None = 392,
        encoder_layers: Sequence[int] | None = None,
        num_groups: int = 2,
        num_inps: int = 6,
        soft_coherence: bool | None = None,
        residual_learning: bool | None = None,
        coherence_weight: float = 0.2,
        coherence_temperature: float = 1.0,
        mining_power: float = 3.0,
        residual_loss_weight: float = 1.0,
        residual_map_weight: float = 0.5,
        pseudo_noise_scale: float = 1.0,
        learning_rate: float = 1e-3,
        final_learning_rate: float = 1e-4,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
        gradient_clip_val: float = 0.1,
        few_shot_augment: bool = False,
        score_size: int | None = 256,
        blur_kernel_size: int = 5,
        blur_sigma: float = 4.0,
        top_fraction: float = 0.01,
        per_category_metrics: bool = True,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        if variant not in VARIANTS:
            msg = f"variant must be one of {sorted(VARIANTS)}, got '{variant}'"
            raise ValueError(msg)
        resize = as_image_size(image_size, "image_size", minimum=14)
        check_crop_size(crop_size, resize)
        check_schedule(learning_rate, final_learning_rate, weight_decay, warmup_steps)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(resize, crop_size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        plus_plus = VARIANTS[variant]
        self.soft_coherence = plus_plus if soft_coherence is None else bool(soft_coherence)
        self.residual_learning = plus_plus if residual_learning is None else bool(residual_learning)
        self.model = InpFormerPlusPlusModel(
            backbone=backbone,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            backbone_kwargs=dict(backbone_kwargs or {}),
            encoder_layers=encoder_layers,
            num_groups=num_groups,
            num_inps=num_inps,
            residual_learning=self.residual_learning,
            residual_map_weight=residual_map_weight,
            pseudo_noise_scale=pseudo_noise_scale,
            score_size=score_size,
            blur_kernel_size=blur_kernel_size,
            blur_sigma=blur_sigma,
            top_fraction=top_fraction,
        )
        check_patch_multiple(
            self.input_size or ((crop_size,) * 2 if crop_size else resize), self.model.encoder.patch_size
        )
        self.loss = InpFormerLoss(
            coherence_weight=coherence_weight,
            mining_power=mining_power,
            soft_coherence=self.soft_coherence,
            coherence_temperature=coherence_temperature,
            residual_loss_weight=residual_loss_weight,
        )

    @classmethod
    def configure_pre_processor(
        cls,
        image_size: int | Sequence[int] | None = None,
        crop_size: int | None = 392,
    ) -> PreProcessor:
        """Fixed resize (paper: 448) then centre crop (paper: 392) and ImageNet normalisation (exported graphs see
        exactly what training saw)."""
        return resize_crop_normalise(as_image_size(image_size or 448, "image_size", minimum=14), crop_size)

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """anomalib's callbacks and ours (:func:`~anomalib_npgmf.models.common.checkpoint.plugin_callbacks`); nothing
        is fitted on images, so there is no calibration to refresh."""
        per_category = self.hparams.get("per_category_metrics", True)
        return [*super().configure_callbacks(), *plugin_callbacks(self, per_category=per_category)]

    # ------------------------------------------------------------------------------------------------ training
    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """StableAdamW (anomalib's port of the official optimiser) with the warm-up + cosine schedule per step."""
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps) or total_steps < 1:
            msg = "InpFormerPlusPlus needs a finite run for its cosine schedule: set max_epochs or max_steps"
            raise ValueError(msg)
        parameters = [parameter for module in self.model.trainable_modules() for parameter in module.parameters()]
        names = ("learning_rate", "final_learning_rate", "weight_decay", "warmup_steps")
        return paper_optimiser(parameters, int(total_steps), **{name: self.hparams[name] for name in names})

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Reconstruct the frozen encoder's features of normal images from their own INPs."""
        del args, kwargs
        check_finite_images(batch)
        images = batch.image
        if self.hparams.get("few_shot_augment"):
            images = few_shot_augment(images)
        losses = self.loss(self.model(images, pseudo_seeds=self._pseudo_seeds(batch)))
        log_losses(self, losses, images.shape[0], on_step=True)
        return {"loss": losses["loss"]}

    def _pseudo_seeds(self, batch: Batch) -> list[int] | None:
        """Per-image, rank-independent seeds of the residual head's pseudo-anomalies (residual learning only)."""
        if not self.model.residual_learning:
            return None
        return pseudo_anomaly_seeds([image_seed(image) for image in batch.image], self.global_step)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Gradient-norm clipping 0.1 (paper); no sanity validation."""
        return {"gradient_clip_val": self.hparams.get("gradient_clip_val", 0.1), "num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only (one category, several at once, or a few shots)."""
        return LearningType.ONE_CLASS
