"""NPGMF as an anomalib model: ``anomalib train --model Npgmf ...``.

Normality-Prior Guided Multi-semantic Fusion (arXiv 2506.18544), reconstructed where the paper is silent; see
``README.md`` beside this file for what is stated and what is ours.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_npgmf import Npgmf
    >>> from anomalib_npgmf.data import MVTecLOCORegions
    >>> model = Npgmf(backbone="resnet18", pre_trained=False, clip_model="ViT-B-32", image_size=(128, 128))
    >>> Engine(max_epochs=2).train(model, datamodule=MVTecLOCORegions(root="datasets/demo", category="demo_box"))
"""

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
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import optim

from anomalib_npgmf.models.common import (
    CheckedEvaluationSteps,
    PluginExportMixin,
    RankPreservingPostProcessing,
    VersionedCheckpoints,
    as_image_size,
    batch_image_paths,
    check_finite_images,
    encoder_only_int8_scope,
    log_losses,
    plugin_callbacks,
)
from anomalib_npgmf.models.common.calibration import hold_out_normals

from .categories import CategoryConditioning, checked_categories
from .components import clip_text_dim, resolve_clip_weights
from .fitting import NormalityFitting
from .loss import NpgmfLoss
from .torch_model import NpgmfModel
from .variants import resolve_switches


class Npgmf(
    NormalityFitting,
    CategoryConditioning,
    VersionedCheckpoints,
    CheckedEvaluationSteps,
    PluginExportMixin,
    RankPreservingPostProcessing,
    AnomalibModule,
):
    """NPGMF: reverse distillation guided by normality priors, plus a structural branch, scores fused.

    Args:
        variant: ``"paper"`` (default): the paper's model, M_LAD (OCE, codebooks, AGC, fusion decoder) and M_SAD
            (reverse distillation), fused scores, nothing of ours. ``"plus"``: our additions on top (the global and
            patch normality priors, the invariant and region priors, and the raw OCE embedding beside the codes). Each
            addition is also its own switch (``use_global_prior``, ``use_patch_prior``, ``use_invariant_prior``,
            ``use_region_prior``, ``use_part_prior``, ``raw_embedding``); ``None`` takes the variant's value.
        backbone: Frozen timm CNN encoder. Paper: ``resnet101``; ``resnet18`` / ``wide_resnet50_2`` for CPUs.
        pre_trained: Use pretrained encoder and CLIP weights (the paper's setting). They are read from local files
            only (``backbone_weights``, ``clip_weights`` or ``$ANOMALIB_NPGMF_WEIGHTS_DIR``); missing files fail at
            construction. ``False`` trains from random initialisation (tests, demo, air-gapped trials).
        backbone_weights: Local file with the encoder's timm weights (``.safetensors`` or a torch state dict).
        clip_model: open_clip architecture of the text tower (AGC).
        clip_weights: Local open_clip checkpoint of ``clip_model``.
        category: Category name fed to the text prior; by default the datamodule's ``category``.
        categories: One model for several categories [ours]: their names, in the order of the datamodule
            (``MultiCategory``). Each training image is conditioned on its own category's text prior; at inference
            (and in the exported graph) each image is routed to the category whose Gaussian of pooled encoder features
            is nearest (the global prior's, or with it off a whole-image one used for routing only), and scored with
            that category's text prior (and Gaussians). ``test`` adds a per-category AUROC table.
        image_size: Fixed (H, W) the pre-processor resizes to; the exported graph has this size.
        bottleneck_channels: Width of both bottlenecks.
        oce_strides: Strides of the OCE's two convolutions on f_E^5 (paper ``(2, 2)``).
        codebook_size: Codes per codebook (K); ``0`` disables the codebooks (ablation).
        num_codebooks: Number of codebooks over channel groups.
        prior_channels: Channels of the category prior map; ``0`` disables AGC (ablation).
        use_logical: Keep the logical branch M_LAD (ablation switch).
        use_structural: Keep the structural branch M_SAD (ablation switch).
        use_global_prior: M_LAD's global normality prior (image-level Gaussian of pooled features) [ours].
        use_patch_prior: M_SAD's patch normality prior (per-position Gaussian of local features) [ours].
        raw_embedding: Feed the raw OCE embedding to M_LAD's decoder beside codes and prior [ours; the paper's text
            reads as "instead of" the raw bottleneck, so the paper variant leaves it out].
        global_in_map: With the global prior: spread its image-level distance over the whole anomaly map (``True``,
            the behaviour before issue 16) or add it to the image score only (``False``, default): the map then
            holds only what localises, and the image score is the same either way.
        score_parts: Parts the image score reads [ours, issue 18]: ``None`` (default) all, the maximum of the fused map
            (plus the global distance); e.g. ``["global", "patch"]`` scores images by the normality priors only while
            the anomaly map still fuses every part. See the model README for what it measured.
        calibrated_local_score: Calibrate the local maps' maximum on normal images' per-image maxima before it joins
            the image-level priors in the image score [ours, issue 18]; the map is unchanged. See the model README.
        local_score_weight: Weight of the local maps' maximum in the image score against the image-level priors'
            (1: as fused; > 0) [ours, issue 18]; the map is unchanged. See the model README.
        image_level_fusion: ``"sum"`` (default) adds the image-level priors' distances by their weights; ``"max"``
            takes the largest normalised one, times their summed weights [ours, issue 18]. See the model README.
        patch_prior_dim: Channels the patch prior keeps (random subset of encoder levels 1-3).
        global_prior_grid: Pooling cells per side of the global prior [ours]: 2 (default) keeps where parts are, 1
            pools the whole image (position-free; see the model README, issue 18).
        use_invariant_prior: Image-level Gaussian of feature moments averaged over the image's flips and quarter-turns
            [ours, issue 18]: blind to where parts lie and which way they point, so counts and kinds of loose parts
            show; its distance enters the image score only.
        invariant_weight: Weight of the invariant prior in the image score (on the scale of ``fusion_weights``).
        choose_invariant_weight: Choose that weight at fit time from part-level pseudo-anomalies (a part removed, a
            part duplicated) of the held-out normals [ours, issue 18]; ``invariant_weight`` breaks ties and is kept
            when no image has a part. Saved in checkpoints, baked into exports. See the model README.
        invariant_scale: Size of the views the invariant prior encodes, relative to ``image_size`` (0.5: a quarter of
            the cost, the same AUROC on the tuning scene).
        use_region_prior: Per-region Gaussians of feature moments over coarse grids (halves, quarters) [ours, issue
            18], painted into the anomaly map: a missing or extra part lights the region the LOCO ground truth marks.
        region_weight: Weight of the region prior's map in the fused map (on the scale of ``fusion_weights``; 3,
            chosen on ``box`` with relative painting; 0.25 suits ``region_relative: false``).
        region_prior_grids: (rows, columns) of the grids whose regions the region prior scores.
        region_prior_dim: Moment entries the region prior keeps per region (a seeded random subset).
        region_relative: Paint each region's distance minus the image's median region distance, so an image that
            drifts as a whole is left to the image-level priors (chosen on ``box``; the model README).
        use_part_prior: A Gaussian of the image's part counts per kind [ours, issue 18, opt-in]: parts are blobs off
            the image's median colour (a plain background is assumed), grouped into ``part_kinds`` kinds by k-means
            on the training parts; its distance enters the image score only (``PartNormalityPrior``).
        part_weight: Its weight in the image score (on the scale of ``fusion_weights``).
        choose_part_weight: Choose ``part_weight`` at fit time by ``choose_invariant_weight``'s rule on the same
            pseudo-anomalies, from 0.5 to 64 [ours, issue 18]; ``part_weight`` breaks ties and is kept when no image
            has a part. Saved in checkpoints, baked into exports. See the model README.
        part_floor: Its normalised distance counts only above this value [ours, issue 18]; ``None`` (default): all of
            it; 0: only above its normal images' 0.9 quantile, so on images whose counts are normal (a part in the
            wrong place) it adds no noise over the other priors. See the model README.
        part_in_map: Paint the part prior into the anomaly map [ours, issue 18, opt-in; needs ``use_part_prior``]: a
            part far from its kind, the parts of a kind with too many, and for too few parts the territory where the
            normals' parts lie (where LOCO marks a missing part). The image score does not read it.
        part_map_weight: Its weight in the fused map (on the scale of ``fusion_weights``).
        part_map_floor: The part map counts only above this normalised value [ours, issue 18]: 0 (default), its normal
            images' 0.9 quantile; 0.1, their 0.995 quantile, so normal parts painted at their usual distance from their
            kind do not raise the good images' false-positive level. Measured: that also erases a missing part's
            territory, so box's rule keeps 0 (model README, "A floor under the part map").
        part_map_kind_scaled: Paint a part's distance to its kind above the mean of that kind's training parts, in
            their spread, instead of as it is [ours, issue 18; needs ``part_in_map``], so a normal part at its kind's
            usual distance paints (about) nothing. See the model README.
        part_kinds: Part kinds.
        part_contrast: Colour distance (RGB, 0-1) from the median colour that makes a pixel part of a part.
        fusion_weights: Weights of the (local logical, structural, global, patch) normalised maps; three values
            (older configs) give the patch map the structural map's weight.
        score_fusion_weights: The same weights for the image score only [ours, issue 18]; ``None`` (default):
            ``fusion_weights``. The CPU demo config weighs the patch and part maps up in the map (16 and 32, chosen on
            box) and keeps the image score at ``[1, 1, 1, 1]``. See the model README.
        blur_sigma: Gaussian smoothing of the maps in pixels of the input (> 0); 4, ReverseDistillation's, suits
            256 px (see the model README for other sizes).
        learning_rate: Adam learning rate of both students.
        pre_processor, post_processor, evaluator, visualizer: As in every anomalib model; the default post-processor
            is anomalib's with a normalisation that never ties two values (``RankPreservingPostProcessor``).
    """

    def __init__(
        self,
        variant: str = "paper",
        backbone: str = "resnet101",
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        clip_model: str = "ViT-B-32",
        clip_weights: str | None = None,
        category: str | None = None,
        categories: Sequence[str] | None = None,
        image_size: tuple[int, int] | int = (256, 256),
        bottleneck_channels: int = 256,
        oce_strides: Sequence[int] = (2, 2),
        codebook_size: int = 256,
        num_codebooks: int = 2,
        prior_channels: int = 64,
        use_logical: bool = True,
        use_structural: bool = True,
        use_global_prior: bool | None = None,
        use_patch_prior: bool | None = None,
        raw_embedding: bool | None = None,
        global_in_map: bool = False,
        score_parts: Sequence[str] | None = None,
        calibrated_local_score: bool = False,
        local_score_weight: float = 1.0,
        image_level_fusion: str = "sum",
        patch_prior_dim: int = 64,
        global_prior_grid: int = 2,
        use_invariant_prior: bool | None = None,
        invariant_weight: float = 4.0,
        choose_invariant_weight: bool = False,
        invariant_scale: float = 0.5,
        use_region_prior: bool | None = None,
        region_weight: float = 3.0,
        region_prior_grids: Sequence[Sequence[int]] = ((1, 2), (2, 1), (2, 2)),
        region_prior_dim: int = 32,
        region_relative: bool = True,
        use_part_prior: bool | None = None,
        part_weight: float = 1.0,
        choose_part_weight: bool = False,
        part_floor: float | None = None,
        part_in_map: bool = False,
        part_map_weight: float = 8.0,
        part_map_floor: float = 0.0,
        part_map_kind_scaled: bool = False,
        part_kinds: int = 8,
        part_contrast: float = 40 / 255,
        fusion_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        score_fusion_weights: Sequence[float] | None = None,
        blur_sigma: float = 4.0,
        learning_rate: float = 0.005,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        image_size = as_image_size(image_size)
        switches = resolve_switches(
            variant,
            use_global_prior=use_global_prior,
            use_patch_prior=use_patch_prior,
            use_invariant_prior=use_invariant_prior,
            use_region_prior=use_region_prior,
            use_part_prior=use_part_prior,
            raw_embedding=raw_embedding,
        )
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(image_size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.categories = checked_categories(category, categories)
        uses_prior = use_logical and prior_channels > 0
        # Resolve every pretrained file now, so a missing one fails before any data is read.
        self._clip_weights_file = resolve_clip_weights(clip_model, pre_trained, clip_weights) if uses_prior else None
        self.learning_rate = learning_rate
        self.model = NpgmfModel(
            input_size=tuple(self.input_size or image_size),
            backbone=backbone,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            bottleneck_channels=bottleneck_channels,
            oce_strides=tuple(oce_strides),
            codebook_size=codebook_size,
            num_codebooks=num_codebooks,
            prior_channels=prior_channels if use_logical else 0,
            text_dim=clip_text_dim(clip_model) if uses_prior else 1,
            num_categories=max(1, len(self.categories)),
            use_logical=use_logical,
            use_structural=use_structural,
            use_global_prior=switches["use_global_prior"],
            use_patch_prior=switches["use_patch_prior"],
            patch_prior_dim=patch_prior_dim,
            global_prior_grid=global_prior_grid,
            use_invariant_prior=switches["use_invariant_prior"],
            invariant_weight=invariant_weight,
            choose_invariant_weight=choose_invariant_weight,
            invariant_scale=invariant_scale,
            use_region_prior=switches["use_region_prior"],
            region_weight=region_weight,
            region_prior_grids=tuple(tuple(grid) for grid in region_prior_grids),
            region_prior_dim=region_prior_dim,
            region_relative=region_relative,
            use_part_prior=switches["use_part_prior"],
            part_weight=part_weight,
            choose_part_weight=choose_part_weight,
            part_floor=part_floor,
            part_in_map=part_in_map,
            part_map_weight=part_map_weight,
            part_map_floor=part_map_floor,
            part_map_kind_scaled=part_map_kind_scaled,
            part_kinds=part_kinds,
            part_contrast=part_contrast,
            fusion_weights=tuple(fusion_weights),
            score_fusion_weights=None if score_fusion_weights is None else tuple(score_fusion_weights),
            raw_embedding=switches["raw_embedding"] or codebook_size == 0,
            global_in_map=global_in_map,
            score_parts=score_parts,
            calibrated_local_score=calibrated_local_score,
            local_score_weight=local_score_weight,
            image_level_fusion=image_level_fusion,
            blur_sigma=blur_sigma,
        )
        self.loss = NpgmfLoss()
        self._calibrated_at_step: int | None = None  # global step whose weights the normalisation was fitted on

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | int | None = None) -> PreProcessor:
        """Fixed resize + ImageNet normalisation: the exported graph then always sees the size it was built for."""
        return AnomalibModule.configure_pre_processor(as_image_size(image_size or (256, 256)))

    def on_fit_start(self) -> None:
        """Set up the text prior before the first training step, check a multi-category datamodule's names, and hold
        out calibration normals before the training loader is built (when validation may hold test images)."""
        self._ensure_prior()
        self.check_datamodule_categories()
        hold_out_normals(getattr(self.trainer, "datamodule", None))

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """anomalib's callbacks and ours (:func:`~anomalib_npgmf.models.common.checkpoint.plugin_callbacks`); the
        per-category table for a model of several categories."""
        return [*super().configure_callbacks(), *plugin_callbacks(self, per_category=len(self.categories) > 1)]

    def configure_optimizers(self) -> optim.Optimizer:
        """Adam on both students (RD's settings); the encoder and the text embedding stay frozen."""
        trainable = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        return optim.Adam(trainable, lr=self.learning_rate, betas=(0.5, 0.999))

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Both branches learn to reconstruct the frozen encoder's features of normal images."""
        del args, kwargs
        check_finite_images(batch)
        losses = self.loss(self.model(batch.image, self.category_indices(batch_image_paths(batch))))
        log_losses(self, losses, batch.image.shape[0])
        return {"loss": losses["loss"]}

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No gradient clipping (RD), no sanity validation (it would fit normalisation on an untrained model)."""
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}

    def int8_ignored_scope(self, model: Any) -> Any:
        """INT8 PTQ quantises the frozen encoder only; decoders, priors and fusion stay FP32 (see
        :func:`~anomalib_npgmf.models.common.export.encoder_only_int8_scope` for why and how)."""
        return encoder_only_int8_scope(model, self.model.encoder)

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS
