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

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
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
from tqdm.auto import tqdm

from anomalib_npgmf.metrics.per_category import PerCategoryImageAUROC, category_from_path
from anomalib_npgmf.models.common import (
    AtomicCheckpointing,
    CheckedEvaluationSteps,
    FinalCheckpoint,
    PluginExportMixin,
    batch_image_paths,
    check_finite_images,
    check_version,
    gather_unique_by_key,
    stamp_version,
)
from anomalib_npgmf.models.common.calibration import calibration_loader, hold_out_normals

from .components import clip_text_dim, encode_category_names, resolve_clip_weights
from .loss import NpgmfLoss
from .torch_model import PARTS, NpgmfModel

logger = logging.getLogger(__name__)


class Npgmf(CheckedEvaluationSteps, PluginExportMixin, AnomalibModule):
    """NPGMF: reverse distillation guided by normality priors, plus a structural branch, scores fused.

    Args:
        variant: ``"paper"`` (default): the paper's model, M_LAD (OCE, codebooks, AGC, fusion decoder) and M_SAD
            (reverse distillation), fused scores, nothing of ours. ``"plus"``: our additions on top (the global and
            patch normality priors, and the raw OCE embedding beside the codes). Each addition is also its own switch
            (``use_global_prior``, ``use_patch_prior``, ``raw_embedding``); ``None`` takes the variant's value.
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
        patch_prior_dim: Channels the patch prior keeps (random subset of encoder levels 1-3).
        fusion_weights: Weights of the (local logical, structural, global, patch) normalised maps; three values
            (older configs) give the patch map the structural map's weight.
        learning_rate: Adam learning rate of both students.
        pre_processor, post_processor, evaluator, visualizer: As in every anomalib model.
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
        patch_prior_dim: int = 64,
        fusion_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        learning_rate: float = 0.005,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        image_size = _as_size(image_size)
        if variant not in VARIANTS:
            msg = f"variant must be one of {sorted(VARIANTS)}, got {variant!r}"
            raise ValueError(msg)
        defaults = VARIANTS[variant]
        use_global_prior = defaults["use_global_prior"] if use_global_prior is None else use_global_prior
        use_patch_prior = defaults["use_patch_prior"] if use_patch_prior is None else use_patch_prior
        raw_embedding = defaults["raw_embedding"] if raw_embedding is None else raw_embedding
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(image_size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.categories = _checked_categories(category, categories)
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
            use_global_prior=use_global_prior,
            use_patch_prior=use_patch_prior,
            patch_prior_dim=patch_prior_dim,
            fusion_weights=tuple(fusion_weights),
            raw_embedding=raw_embedding or codebook_size == 0,
            global_in_map=global_in_map,
        )
        self.loss = NpgmfLoss()
        self._calibrated_at_step: int | None = None  # global step whose weights the normalisation was fitted on

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | int | None = None) -> PreProcessor:
        """Fixed resize + ImageNet normalisation: the exported graph then always sees the size it was built for."""
        return AnomalibModule.configure_pre_processor(_as_size(image_size or (256, 256)))

    # ----------------------------------------------------------------------------------------- priors and norms
    def _category_names(self) -> list[str]:
        if self.categories:
            return list(self.categories)
        if self.hparams.get("category"):
            return [self.hparams["category"]]
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        # MVTecAD/MVTecLOCO/VisA carry `category`; anomalib's Folder carries the user's `name`.
        category = getattr(datamodule, "category", None) or getattr(datamodule, "_name", None)
        if not category:
            msg = (
                "Npgmf's text prior needs the category name: pass `category=` (CLI: --model.category NAME) or use a "
                "datamodule that has a `category` (e.g. MVTecLOCO, MVTecAD, Folder with name=...)."
            )
            raise ValueError(msg)
        return [str(category)]

    def _ensure_prior(self) -> None:
        """Embed the category name once with the frozen CLIP text tower (restored checkpoints already carry it)."""
        prior = self.model.prior
        if prior is None or bool(prior.ready):
            return
        names = self._category_names()
        logger.info("Npgmf: encoding category prompt(s) %s with CLIP %s", names, self.hparams["clip_model"])
        embedding = encode_category_names(names, self.hparams["clip_model"], self._clip_weights_file)
        prior.set_embedding(embedding.to(prior.text_embedding.device))

    def on_fit_start(self) -> None:
        """Set up the text prior before the first training step; check a multi-category datamodule's names; hold
        out calibration normals before the training loader is built (when validation may hold test images)."""
        self._ensure_prior()
        datamodule = getattr(self.trainer, "datamodule", None)
        hold_out_normals(datamodule)
        names = getattr(datamodule, "categories", None)
        if self.categories and names and list(names) != list(self.categories):
            msg = f"Npgmf was built for categories {list(self.categories)} but the datamodule has {list(names)}"
            raise ValueError(msg)

    def category_indices(self, paths: Sequence[str]) -> torch.Tensor | None:
        """Index in ``categories`` of each image (``None`` for a one-category model)."""
        if len(self.categories) < 2:
            return None
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        category_of = getattr(datamodule, "category_of", None) or category_from_path
        indices = []
        for path in paths:
            name = category_of(str(path))
            if name not in self.categories:
                msg = f"image {path} belongs to category {name!r}, not one of the model's {list(self.categories)}"
                raise ValueError(msg)
            indices.append(self.categories.index(name))
        return torch.tensor(indices, dtype=torch.long, device=self.device)

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """anomalib's component callbacks, atomic checkpoint writes, and the per-category table (several categories)."""
        callbacks = [*super().configure_callbacks(), AtomicCheckpointing(), FinalCheckpoint()]
        if len(self.categories) > 1:
            callbacks.append(PerCategoryImageAUROC())
        return callbacks

    def on_test_start(self) -> None:
        """Scoring an untrained or restored model: make sure prior and normalisation exist."""
        self._ensure_ready_for_inference()

    def on_predict_start(self) -> None:
        """See :meth:`on_test_start`."""
        self._ensure_ready_for_inference()

    def _ensure_ready_for_inference(self) -> None:
        self._ensure_prior()
        if not any(bool(self.model.normalizer(part).fitted) for part in PARTS):
            logger.warning(
                "Npgmf: map normalisation was never fitted (no validation run); fused scores use unit scales. "
                "Train with a validation split of normal images for calibrated scores."
            )

    def on_validation_epoch_start(self) -> None:
        """Fit the priors (once) and each part's map normalisation, before the validation images are scored.

        Done here, not at the end of validation, so that the validation outputs anomalib's post-processor uses for
        its threshold are already on the final scale. The last epoch need not validate: see
        :meth:`calibrate_final_weights`.
        """
        self._calibrate()

    def calibrate_final_weights(self) -> None:
        """At the end of fitting (``FinalCheckpoint``): refit unless the last validation already ran on these weights.

        With ``check_val_every_n_epoch: 10`` and ``max_epochs: 15`` the normalisation would otherwise stay fitted on
        epoch 10's weights; ``FinalCheckpoint`` then saves the calibrated final state.
        """
        if self._calibrated_at_step != self.trainer.global_step:
            self._calibrate()

    def _calibrate(self) -> None:
        if any(not bool(prior.fitted) for prior in self.model.image_priors):
            self.fit_priors(self.trainer.train_dataloader)
        self.fit_normalization(self.calibration_dataloaders())
        self._calibrated_at_step = self.trainer.global_step

    def calibration_dataloaders(self) -> list:
        """Normal images the normalisation is fitted on, never test images (see ``models/common/calibration.py``):
        held-out training normals when the validation split may hold test images, else the validation loaders."""
        datamodule = getattr(self.trainer, "datamodule", None)
        held_out = hold_out_normals(datamodule)
        if held_out is not None:
            return [calibration_loader(datamodule, held_out)]
        loaders = self.trainer.val_dataloaders
        if loaders is None and datamodule is not None:  # no validation ran yet (e.g. check_val_every_n_epoch > epochs)
            loaders = datamodule.val_dataloader()
        return list(loaders) if isinstance(loaders, list | tuple) else [loaders]

    @torch.no_grad()
    def fit_priors(self, dataloader: Iterable | None) -> None:
        """Fit the normality priors and the category router on the (normal) training images, gathered over DDP ranks.

        Each image is encoded once; every prior reads its own statistic of the same features.
        """
        priors = self.model.image_priors
        if not priors:
            return
        if dataloader is None:
            logger.warning("Npgmf: no training dataloader to fit the normality priors on; they stay off.")
            return
        keys: list[str] = []
        samples: list[list[torch.Tensor]] = [[] for _ in priors]
        indices: list[torch.Tensor] = []
        for images, paths in self._normal_images(dataloader, "Npgmf: fitting the normality priors"):
            *levels, _ = self.model.encoder(images)
            for prior, collected in zip(priors, samples, strict=True):
                collected.extend(prior.samples(levels).cpu())
            category_index = self.category_indices(paths)
            indices.extend(category_index.cpu() if category_index is not None else torch.zeros(len(paths)).long())
            keys.extend(paths)
        category_index = torch.stack(gather_unique_by_key(keys, indices)) if keys else None
        for prior, collected in zip(priors, samples, strict=True):
            prior.fit(torch.stack(gather_unique_by_key(keys, collected)).to(self.device), category_index)

    @torch.no_grad()
    def fit_normalization(self, dataloaders: Iterable | None) -> None:
        """Fit the quantile normalisation on the normal images of ``dataloaders`` (gathered over DDP ranks)."""
        keys: list[str] = []
        maps: dict[str, list[torch.Tensor]] = {part: [] for part in PARTS}
        was_training = self.model.training
        self.model.eval()
        loaders = dataloaders if isinstance(dataloaders, list | tuple) else [dataloaders]
        for loader in loaders:
            if loader is None:
                continue
            for images, paths in self._normal_images(loader, "Npgmf: fitting map normalisation"):
                for part, part_map in self.model.raw_maps(images).items():
                    maps[part].extend(part_map.cpu())
                keys.extend(paths)
        self.model.train(was_training)
        if not keys:
            logger.warning("Npgmf: the validation set has no normal images; map normalisation left unchanged.")
            return
        for part, part_maps in maps.items():
            if part_maps:
                gathered = gather_unique_by_key(keys, part_maps)
                self.model.normalizer(part).fit([m.to(self.device) for m in gathered])

    def _normal_images(self, dataloader: Iterable, description: str) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Pre-processed normal images of a dataloader with their paths (the keys that de-duplicate DDP padding)."""
        for batch in tqdm(dataloader, desc=description, leave=False, disable=None):
            normal = _normal_mask(batch)
            if not bool(normal.any()):
                continue
            images = batch.image[normal].to(self.device)
            if self.pre_processor is not None and self.pre_processor.transform is not None:
                images = self.pre_processor.transform(images)
            yield images, [path for path, keep in zip(batch_image_paths(batch), normal.tolist(), strict=True) if keep]

    # ----------------------------------------------------------------------------------------- training
    def configure_optimizers(self) -> optim.Optimizer:
        """Adam on both students (RD's settings); the encoder and the text embedding stay frozen."""
        trainable = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        return optim.Adam(trainable, lr=self.learning_rate, betas=(0.5, 0.999))

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Both branches learn to reconstruct the frozen encoder's features of normal images."""
        del args, kwargs
        check_finite_images(batch)
        losses = self.loss(self.model(batch.image, self.category_indices(batch_image_paths(batch))))
        for name, value in losses.items():
            self.log(
                f"train_{name}",
                value.detach(),
                on_epoch=True,
                on_step=False,
                prog_bar=name == "loss",
                batch_size=batch.image.shape[0],
                sync_dist=True,
            )
        return {"loss": losses["loss"]}

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No gradient clipping (RD), no sanity validation (it would fit normalisation on an untrained model)."""
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}

    def int8_ignored_scope(self, model: Any) -> Any:
        """INT8 PTQ quantises the frozen encoder only; decoders, priors and fusion stay FP32.

        Measured at 256 px (``benchmarks/speed/RESULTS.md``): quantising everything (anomalib's default) moved the
        image AUROC by -0.15 (score correlation with FP32 0.50): the scores are small teacher-student and prior
        distances, and INT8 noise in the trained decoders is as large. Encoder-only INT8 kept the correlation at
        0.99. The encoder's convolutions are found from the graph's structure (see ``frozen_encoder_convolutions``);
        if they cannot all be found, nothing is quantised rather than everything.
        """
        import nncf

        from anomalib_npgmf.models.common.export import frozen_encoder_convolutions

        shapes = [tuple(m.weight.shape) for m in self.model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
        encoder = frozen_encoder_convolutions(model, shapes)
        if not encoder:
            logger.warning("INT8 export: the encoder's convolutions were not found in the graph; keeping it all FP32")
        keep_fp32 = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() not in encoder]
        return nncf.IgnoredScope(names=keep_fp32, validate=False)

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the package version, so later versions can refuse or convert old checkpoints clearly."""
        super().on_save_checkpoint(checkpoint)
        stamp_version(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of an incompatible package version before its tensors are loaded."""
        check_version(checkpoint, type(self).__name__)
        super().on_load_checkpoint(checkpoint)


VARIANTS: dict[str, dict[str, bool]] = {
    "paper": {"use_global_prior": False, "use_patch_prior": False, "raw_embedding": False},
    "plus": {"use_global_prior": True, "use_patch_prior": True, "raw_embedding": True},
}


def _checked_categories(category: str | None, categories: Sequence[str] | None) -> list[str]:
    """The model's category list (empty: one category, named by ``category`` or the datamodule)."""
    if categories is None:
        return []
    names = [str(name) for name in categories]
    if category is not None:
        msg = "pass either category= (one category) or categories= (one model for several), not both"
        raise ValueError(msg)
    if not names or any(not name.strip() for name in names) or len(set(names)) != len(names):
        msg = f"categories must be distinct, non-empty names, got {names}"
        raise ValueError(msg)
    return names


def _as_size(size: tuple[int, int] | Sequence[int] | int) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 32:
        msg = f"image_size must be an int or (height, width) with both sides >= 32, got {size}"
        raise ValueError(msg)
    return size


def _normal_mask(batch: Batch) -> torch.Tensor:
    """Which images of a batch are normal (all of them when the batch has no labels, e.g. LOCO validation)."""
    count = batch.image.shape[0]
    if batch.gt_label is None:
        return torch.ones(count, dtype=torch.bool)
    return torch.as_tensor(batch.gt_label).reshape(-1).cpu() == 0
