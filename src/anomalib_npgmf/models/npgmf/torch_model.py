"""PyTorch model of NPGMF: logical branch (M_LAD) + structural branch (M_SAD) on one frozen encoder.

Training returns the teacher features and each branch's reconstruction; eval returns anomalib's ``InferenceBatch``
with the fused, normalised map and its maximum as the image score. Everything eval needs (text embedding, codebooks,
normalisation constants) is a buffer, so the exported graph is self-contained.
"""

import math
from collections.abc import Collection, Sequence

import torch
from anomalib.data import InferenceBatch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from anomalib_npgmf.models.common import QuantileMapNormalizer, SeparableGaussianBlur

from .anomaly_map import floored, fuse_normalised, reconstruction_map
from .components import (
    CategoryPrior,
    FrozenEncoder,
    GlobalNormalityPrior,
    GroupedVectorQuantizer,
    InvariantNormalityPrior,
    MultiScaleBottleneck,
    OneClassEmbedding,
    PartNormalityPrior,
    PatchNormalityPrior,
    ReconstructionDecoder,
    RegionNormalityPrior,
    symmetric_views,
    view_count,
    view_size,
)
from .pseudo_anomalies import CANDIDATE_WEIGHTS, PART_CANDIDATE_WEIGHTS

# the parts normalised and fused
PARTS = ("logical", "structural", "global", "patch", "invariant", "region", "part", "part_map")
IMAGE_LEVEL = ("global", "invariant", "part")  # parts with one value per image (a constant map until they are scored)
IMAGE_LEVEL_FUSIONS = ("sum", "max")  # how the image-level parts join the image score (issue 18)
CHOSEN_WEIGHT_CANDIDATES = {"invariant": CANDIDATE_WEIGHTS, "part": PART_CANDIDATE_WEIGHTS}  # what each is chosen from
# parts that read only the frozen encoder and priors fitted once: their maps do not change while the students train
FROZEN_PARTS = ("global", "patch", "invariant", "region", "part", "part_map")


class LogicalBranch(nn.Module):
    """M_LAD: OCE bottleneck on f_E^5, snapped to normal codes, fused with the category prior, decoded.

    [paper] "instead of feeding the compressed bottleneck to the decoder directly", the multi-semantic features of
    normal samples (codes, category prior) are fused and decoded. Whether the raw OCE output also enters that fusion is
    not settled by what we can read: ``raw_embedding`` switches it (``False``: the decoder sees only codes and prior, so
    an abnormal bottleneck cannot bypass the codebook). [ours] fusion operator = concat + 1x1 conv at the bottleneck and
    concat of the prior map at every decoder stage; a learned position embedding is added before quantisation so codes
    can depend on where a cell is.
    """

    def __init__(
        self,
        deepest_channels: int,
        level_channels: Sequence[int],
        bottleneck_channels: int,
        oce_strides: Sequence[int],
        prior: CategoryPrior | None,
        quantizer: GroupedVectorQuantizer | None,
        bottleneck_cells: tuple[int, int],
        raw_embedding: bool = True,
    ) -> None:
        super().__init__()
        if quantizer is None and not raw_embedding:
            msg = "without codebooks (codebook_size=0) the decoder needs the raw OCE embedding: set raw_embedding=True"
            raise ValueError(msg)
        self.raw_embedding = raw_embedding
        self.oce = OneClassEmbedding(deepest_channels, bottleneck_channels, oce_strides)
        self.position = nn.Parameter(torch.zeros(1, bottleneck_channels, *bottleneck_cells))
        self.quantizer = quantizer
        self.prior = prior
        prior_channels = prior.out_channels if prior is not None else 0
        fused_in = bottleneck_channels * (int(raw_embedding) + int(quantizer is not None)) + prior_channels
        self.fuse = nn.Conv2d(fused_in, bottleneck_channels, kernel_size=1)
        self.decoder = ReconstructionDecoder(bottleneck_channels, level_channels, prior_channels)

    def forward(
        self, levels: Sequence[torch.Tensor], deepest: torch.Tensor, category_index: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Reconstruct ``levels`` from the prior-guided bottleneck; returns (reconstruction, commitment loss)."""
        embedding = self.oce(deepest) + self.position
        parts = [embedding] if self.raw_embedding else []
        commitment = embedding.new_zeros(())
        if self.quantizer is not None:
            codes, commitment, _ = self.quantizer(embedding)
            parts.append(codes)
        prior_grid = None
        if self.prior is not None:
            prior_grid = self.prior.grid_map(embedding.shape[0], category_index)
            parts.append(CategoryPrior.at(prior_grid, embedding.shape[-2:]))
        fused = self.fuse(torch.cat(parts, dim=1))
        reconstruction = self.decoder(fused, [level.shape[-2:] for level in levels], prior_grid)
        return reconstruction, commitment


class StructuralBranch(nn.Module):
    """M_SAD [ours]: plain reverse distillation (RD's multi-scale OCBE, no priors) sharing the frozen encoder.

    Strong on local defects and nearly free on a CPU, since the encoder pass is shared with M_LAD.
    """

    def __init__(self, level_channels: Sequence[int], bottleneck_channels: int) -> None:
        super().__init__()
        self.bottleneck = MultiScaleBottleneck(level_channels, bottleneck_channels)
        self.decoder = ReconstructionDecoder(bottleneck_channels, level_channels)

    def forward(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Reconstruct ``levels`` from their own compressed embedding."""
        return self.decoder(self.bottleneck(levels), [level.shape[-2:] for level in levels])


class NpgmfModel(nn.Module):
    """NPGMF network.

    Args:
        input_size: (H, W) after pre-processing; fixed, so the exported graph has a fixed size.
        backbone: timm CNN with 5 stages (paper: ``resnet101``).
        pre_trained: Load local pretrained encoder weights.
        backbone_weights: Local encoder weights file.
        bottleneck_channels: Channels of both branches' bottlenecks.
        oce_strides: Strides of the OCE's two convolutions.
        codebook_size: Codes per codebook (K); 0 disables the codebooks.
        num_codebooks: Codebooks (channel groups).
        prior_channels: Channels of the category prior map; 0 disables AGC.
        text_dim: Width of the CLIP text embedding the prior holds.
        num_categories: Categories whose embeddings the prior holds.
        use_logical / use_structural: Ablation switches for the branches.
        use_global_prior: Add M_LAD's global normality prior (image-level Mahalanobis distance).
        use_patch_prior: Add M_SAD's patch normality prior (per-position Mahalanobis distance of local features).
        raw_embedding: Feed the raw OCE embedding to M_LAD's decoder beside the codes and the prior.
        global_in_map: Spread the global prior's image-level distance over every pixel of the anomaly map (it then also
            raises the image score through the map's maximum). ``False``: it enters the image score only, and the map
            holds only what localises; the image score is the same either way.
        patch_prior_dim: Channels the patch prior keeps (random subset of levels 1-3).
        global_prior_grid: Cells per side over which the global prior pools (2: where parts are; 1: whole-image means,
            blind to where a part lies, for scenes whose parts have no place of their own).
        use_invariant_prior: Add the invariant normality prior (issue 18) [ours]: an image-level Gaussian of feature
            moments averaged over the image's flips and quarter-turns; its distance enters the image score only.
        invariant_weight: Its weight in the image score, on the scale of ``fusion_weights``.
        choose_invariant_weight: Choose that weight at fit time instead [ours, issue 18]: the one of
            ``pseudo_anomalies.CANDIDATE_WEIGHTS`` whose image-level score best separates part-level pseudo-anomalies
            (a part removed, a part duplicated) of the held-out normals from the normals themselves, if it leads
            ``invariant_weight`` by more than one standard error of that paired AUROC difference (else it stays).
            Stored in the ``invariant_weight`` buffer, so checkpoints and exports carry it.
        invariant_scale: Size of the views it encodes, relative to ``input_size`` (eight views cost eight encoder
            passes; at 0.5 they cost two, with the same AUROC on ``box``: see the model README).
        use_region_prior: Add the region normality prior (issue 18) [ours]: per-region Gaussians of feature moments
            over coarse grids, painted into the anomaly map, so a missing or extra part lights the region the LOCO
            ground truth marks.
        region_weight: Its weight in the fused map, on the scale of ``fusion_weights`` (3, with relative painting;
            chosen on ``box``, see the model README).
        region_prior_grids: (rows, columns) of the grids whose regions it scores.
        region_prior_dim: Moment entries it keeps per region.
        region_relative: Paint each region relative to the image's median region (see ``RegionNormalityPrior``).
        use_part_prior: Add the part normality prior (issue 18) [ours]: an image-level Gaussian of the image's part
            counts per kind (parts cut by colour from the median colour; see ``PartNormalityPrior``); its distance
            enters the image score only.
        part_weight: Its weight in the image score, on the scale of ``fusion_weights``.
        choose_part_weight: Choose that weight at fit time instead [ours, issue 18], by ``choose_invariant_weight``'s
            rule on the same pseudo-anomalies, from ``pseudo_anomalies.PART_CANDIDATE_WEIGHTS``: the image-level score
            with the part prior at each weight, against ``part_weight``. Stored in the ``part_weight`` buffer.
        part_floor: The part prior's normalised distance counts only above this value [ours, issue 18] (``None``: all
            of it; 0: only above its normal images' 0.9 quantile). Counts say nothing about a part in the wrong place,
            so on such an image the part distance is a normal image's, and below the floor it adds nothing to bury
            the other priors' evidence under.
        part_in_map: Paint the part prior into the anomaly map too [ours, issue 18] (``PartNormalityPrior.part_map``):
            a part far from its kind, the parts of a kind with too many, and, for too few parts, the parts'
            territory. The image score does not read it unless ``score_parts`` names ``"part_map"``.
        part_map_weight: Its weight in the fused map, on the scale of ``fusion_weights``.
        part_map_floor: The part map counts only above this normalised value (0: its normal images' 0.9 quantile,
            0.1: their 0.995 quantile) [ours, issue 18]: normal parts sit at a typical distance from their kind, and
            painting that lifts the good images' false-positive level over a scratch or a stain off the parts; a
            floor also erases a missing part's territory, so 0 is the default (measured on box, model README).
        part_map_kind_scaled: Paint a part's distance to its kind above the mean of that kind's training parts, in
            their spread (``PartNormalityPrior.scaled_in_kind``) [ours, issue 18]: a normal part at its kind's usual
            distance then paints (about) nothing, where the plain distance paints it a few spreads high.
        part_kinds: Part kinds it clusters the training parts into.
        part_contrast: Colour distance (RGB, 0-1) from the image's median colour that makes a pixel part of a part.
        fusion_weights: Weights of the (local logical, structural, global[, patch]) normalised maps in the fused map;
            three values give the patch map the structural map's weight.
        score_fusion_weights: The same four weights for the image score only (its local maps' maximum and the
            image-level priors' shares) [ours, issue 18: image and pixel scores need not come from one fused map];
            ``None``: ``fusion_weights``. Lets the map weigh the patch and part maps up without moving the image score.
        blur_sigma: Gaussian smoothing of each branch's map (RD/EfficientAD use 4 at 256 px).
        score_parts: Which parts make the image score (issue 18) [ours]; ``None``: all of them but the part map, the
            maximum of the fused map (plus the image-level distances). E.g. ``("global", "patch")``: the image score
            reads the image-level evidence only, while the anomaly map still fuses every part for localisation.
        calibrated_local_score: Put the local maps' maximum on the image-level priors' footing before it enters the
            image score (issue 18) [ours]: normalised on the normal images' per-image maxima (q_0.9 -> 0, q_0.995 ->
            0.1) and weighted by the local parts' shares, instead of on the per-pixel quantiles' scale. Measured worse
            than the plain maximum on box (model README, "How much the local maximum weighs"); kept to reproduce that.
        local_score_weight: Weight of that maximum in the image score, against the image-level priors' (1: as fused)
            [ours, issue 18]; lower trusts the image-level evidence more. Must be > 0 (0 is ``score_parts`` of the
            image-level priors).
        image_level_fusion: How the image-level priors' normalised distances join the image score [ours, issue 18]:
            ``"sum"``, each times its share (the weights decide); ``"max"``, the largest of them times the sum of
            their shares, so the part that is most anomalous on its own normal images' scale decides, whatever the
            weights (a weak statistic with a large weight cannot outvote a strong one).
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        backbone: str = "resnet101",
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        bottleneck_channels: int = 256,
        oce_strides: Sequence[int] = (2, 2),
        codebook_size: int = 256,
        num_codebooks: int = 2,
        prior_channels: int = 64,
        text_dim: int = 512,
        num_categories: int = 1,
        use_logical: bool = True,
        use_structural: bool = True,
        use_global_prior: bool = True,
        use_patch_prior: bool = True,
        patch_prior_dim: int = 64,
        global_prior_grid: int = 2,
        use_invariant_prior: bool = False,
        invariant_weight: float = 4.0,
        choose_invariant_weight: bool = False,
        invariant_scale: float = 0.5,
        use_region_prior: bool = False,
        region_weight: float = 3.0,
        region_prior_grids: Sequence[Sequence[int]] = ((1, 2), (2, 1), (2, 2)),
        region_prior_dim: int = 32,
        region_relative: bool = True,
        use_part_prior: bool = False,
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
        raw_embedding: bool = True,
        global_in_map: bool = False,
        score_parts: Sequence[str] | None = None,
        calibrated_local_score: bool = False,
        local_score_weight: float = 1.0,
        image_level_fusion: str = "sum",
    ) -> None:
        super().__init__()
        active = {"logical": use_logical, "structural": use_structural, "global": use_global_prior}
        active |= {"patch": use_patch_prior, "invariant": use_invariant_prior, "region": use_region_prior}
        active |= {"part": use_part_prior, "part_map": use_part_prior and part_in_map}
        if part_in_map and not use_part_prior:
            msg = "part_in_map paints the part prior into the map: it needs use_part_prior true"
            raise ValueError(msg)
        if part_map_kind_scaled and not part_in_map:
            msg = "part_map_kind_scaled scales the part map: it needs part_in_map true"
            raise ValueError(msg)
        if not any(active.values()):
            msg = "one of use_logical / use_structural / use_{global,patch,invariant,region,part}_prior must be true"
            raise ValueError(msg)
        weights = {"invariant_weight": invariant_weight, "region_weight": region_weight, "part_weight": part_weight}
        weights["part_map_weight"] = part_map_weight
        for name, weight in weights.items():
            if weight < 0:
                msg = f"{name} must be >= 0, got {weight}"
                raise ValueError(msg)
        if not 0 <= part_map_floor < float("inf"):
            msg = "part_map_floor must be a finite value >= 0 on the normalised scale (0.1 = normal images' 0.995 "
            msg += f"quantile), got {part_map_floor}"
            raise ValueError(msg)
        if not local_score_weight > 0:
            msg = "local_score_weight must be > 0 (for 0, use score_parts: the image-level priors), got "
            msg += f"{local_score_weight}"
            raise ValueError(msg)
        if image_level_fusion not in IMAGE_LEVEL_FUSIONS:
            msg = f"image_level_fusion must be one of {list(IMAGE_LEVEL_FUSIONS)}, got {image_level_fusion!r}"
            raise ValueError(msg)
        if part_floor is not None and not math.isfinite(part_floor):  # unused, as part_weight, without the prior
            msg = f"part_floor must be a finite number (normalised part distance) or None, got {part_floor!r}"
            raise ValueError(msg)
        if choose_invariant_weight and not (use_invariant_prior and use_global_prior and image_level_fusion == "sum"):
            msg = "choose_invariant_weight weighs the invariant prior against the global one: it needs "
            msg += "use_invariant_prior and use_global_prior true and image_level_fusion 'sum'"
            raise ValueError(msg)
        if choose_part_weight and not (use_part_prior and image_level_fusion == "sum"):
            msg = "choose_part_weight weighs the part prior in the image score: it needs use_part_prior true and "
            msg += "image_level_fusion 'sum'"
            raise ValueError(msg)
        for name, values in (("fusion_weights", fusion_weights), ("score_fusion_weights", score_fusion_weights)):
            if values is not None and (len(values) not in (3, 4) or min(values) < 0 or sum(values) <= 0):
                msg = (
                    f"{name} must be three or four non-negative numbers (local logical, structural, global"
                    f"[, patch]) with a positive sum, got {list(values)}"
                )
                raise ValueError(msg)
        self.input_size = tuple(input_size)
        self.encoder = FrozenEncoder(backbone, pre_trained, backbone_weights)
        if len(self.encoder.channels) != 4:
            msg = f"backbone '{backbone}' must expose 4 feature stages after the stem (ResNet-like); it has "
            msg += f"{len(self.encoder.channels)}"
            raise ValueError(msg)
        level_channels = self.encoder.channels[:3]
        self.logical: LogicalBranch | None = None
        self.structural: StructuralBranch | None = None
        if use_logical:
            cells = _bottleneck_cells(self.encoder, input_size, oce_strides)
            prior = CategoryPrior(text_dim, prior_channels, num_categories) if prior_channels > 0 else None
            quantizer = (
                GroupedVectorQuantizer(bottleneck_channels, codebook_size, num_codebooks) if codebook_size else None
            )
            self.logical = LogicalBranch(
                self.encoder.channels[3],
                level_channels,
                bottleneck_channels,
                oce_strides,
                prior,
                quantizer,
                cells,
                raw_embedding=raw_embedding,
            )
        if use_structural:
            self.structural = StructuralBranch(level_channels, bottleneck_channels)
        self.num_categories = int(num_categories)
        self.global_prior = (
            GlobalNormalityPrior(level_channels, num_categories, grid=global_prior_grid) if use_global_prior else None
        )
        # Several categories and no global prior (the paper variant): route by a Gaussian of whole-image channel means
        # per category, a statistic used for routing only, never in the scores.
        self.router: GlobalNormalityPrior | None = None
        if num_categories > 1 and not use_global_prior:
            self.router = GlobalNormalityPrior(level_channels, num_categories, grid=1)
        self.patch_prior: PatchNormalityPrior | None = None
        if use_patch_prior:
            grid = tuple(int(side) for side in self.encoder(torch.zeros(1, 3, *input_size))[1].shape[-2:])
            self.patch_prior = PatchNormalityPrior(level_channels, grid, patch_prior_dim, num_categories=num_categories)
        self.invariant_prior: InvariantNormalityPrior | None = None
        self.invariant_size = view_size(self.input_size, invariant_scale)
        if use_invariant_prior:
            views = view_count(self.input_size)
            self.invariant_prior = InvariantNormalityPrior(level_channels, views, num_categories=num_categories)
        self.region_prior: RegionNormalityPrior | None = None
        if use_region_prior:
            self.region_prior = RegionNormalityPrior(
                level_channels,
                num_categories,
                grids=region_prior_grids,
                dim=region_prior_dim,
                relative=region_relative,
            )
        self.part_prior: PartNormalityPrior | None = None
        if use_part_prior:
            self.part_prior = PartNormalityPrior(
                self.input_size,
                kinds=part_kinds,
                contrast=part_contrast,
                num_categories=num_categories,
                in_map=part_in_map,
                kind_scaled=part_map_kind_scaled,
            )
        self.logical_norm = QuantileMapNormalizer()
        self.structural_norm = QuantileMapNormalizer()
        self.global_norm = QuantileMapNormalizer()
        self.patch_norm = QuantileMapNormalizer()
        # registered only when used, so checkpoints saved before it existed load unchanged
        self.invariant_norm = QuantileMapNormalizer() if use_invariant_prior else None
        self.region_norm = QuantileMapNormalizer() if use_region_prior else None
        self.part_norm = QuantileMapNormalizer() if use_part_prior else None
        self.part_map_norm = QuantileMapNormalizer() if active["part_map"] else None
        self.fusion_weights = fusion_shares(
            fusion_weights, invariant_weight, region_weight, part_weight, part_map_weight
        )
        # what fusion_shares rescales when a weight is chosen (the chosen weights themselves: _weight_built)
        self._weights_built_with = (tuple(fusion_weights), float(region_weight), float(part_map_weight))
        # the image score's shares: the map's own dict unless set apart (then every score-side use reads this one)
        self._score_weights_built_with = tuple(fusion_weights if score_fusion_weights is None else score_fusion_weights)
        self.score_weights = self.fusion_weights
        if score_fusion_weights is not None:
            self.score_weights = fusion_shares(
                score_fusion_weights, invariant_weight, region_weight, part_weight, part_map_weight
            )
        self._weight_built = {"invariant": float(invariant_weight), "part": float(part_weight)}
        self.choose_invariant_weight = bool(choose_invariant_weight)
        self.choose_part_weight = bool(choose_part_weight)
        # each chosen weight's buffers (registered only when used, so older checkpoints load unchanged): the weight,
        # whether it was chosen, and the pseudo-anomaly AUROC of each candidate it was chosen by (0: none made)
        for prior, chosen in (("invariant", self.choose_invariant_weight), ("part", self.choose_part_weight)):
            if chosen:
                self.register_buffer(f"{prior}_weight", torch.tensor(self._weight_built[prior]))
                self.register_buffer(f"{prior}_weight_chosen", torch.tensor(False))
                aurocs = torch.zeros(len(CHOSEN_WEIGHT_CANDIDATES[prior]), dtype=torch.float64)
                self.register_buffer(f"{prior}_weight_aurocs", aurocs)
        if self.choose_invariant_weight or self.choose_part_weight:
            self.register_load_state_dict_pre_hook(_pad_candidate_aurocs)
            self.register_load_state_dict_post_hook(_restore_chosen_shares)
        self.blur = _checked_blur(blur_sigma, input_size)
        self.global_in_map = bool(global_in_map)
        self.score_parts = _checked_score_parts(score_parts, [part for part in PARTS if active[part]])
        if self.choose_part_weight and "part" not in self.score_parts:
            msg = "choose_part_weight weighs the part prior in the image score, but score_parts "
            msg += f"{list(self.score_parts)} leaves it out"
            raise ValueError(msg)
        self.part_in_map = bool(active["part_map"])
        # the part map is 0 wherever no part breaks the pattern; it counts only above its floor
        self.map_floors = {"part_map": float(part_map_floor)}
        # registered only when used, as the invariant / region normalisers
        self.local_score_norm = QuantileMapNormalizer() if calibrated_local_score else None
        self.local_score_weight = float(local_score_weight)
        self.image_level_fusion = image_level_fusion
        self.part_floor = None if part_floor is None else float(part_floor)

    @property
    def image_priors(
        self,
    ) -> list[
        GlobalNormalityPrior | PatchNormalityPrior | InvariantNormalityPrior | RegionNormalityPrior | PartNormalityPrior
    ]:
        """The statistics fitted on the normal training images (no gradient): priors and the category router."""
        priors = (self.global_prior, self.patch_prior, self.router, self.invariant_prior, self.region_prior)
        return [prior for prior in (*priors, self.part_prior) if prior is not None]

    def prior_samples(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What each of :attr:`image_priors` is fitted on, one row per image (one encoder pass; one more over the
        images' views when the invariant prior is on; the part prior reads the images themselves)."""
        *levels, _ = self.encoder(images)
        samples = []
        for prior in self.image_priors:
            if prior is self.invariant_prior:
                samples.append(prior.samples(self._view_levels(images)))
            elif prior is self.part_prior:
                samples.append(prior.samples(images))
            else:
                samples.append(prior.samples(levels))
        return samples

    def _view_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encoder levels 2-4 of the images' flips and quarter-turns (what the invariant prior reads)."""
        if self.invariant_size != tuple(images.shape[-2:]):
            images = F.interpolate(images, size=self.invariant_size, mode="bilinear", align_corners=False)
        return list(self.encoder(symmetric_views(images)))[:-1]

    @property
    def prior(self) -> CategoryPrior | None:
        """The category prior (AGC), when the logical branch uses one."""
        return self.logical.prior if self.logical is not None else None

    def reconstruct(
        self, images: torch.Tensor, category_index: torch.Tensor | None = None
    ) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        """Teacher features and both students' reconstructions (what the loss and the maps are made of)."""
        *levels, deepest = self.encoder(images)
        return self._reconstruct_features(levels, deepest, category_index)

    def _reconstruct_features(
        self, levels: list[torch.Tensor], deepest: torch.Tensor, category_index: torch.Tensor | None
    ) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        outputs: dict[str, list[torch.Tensor] | torch.Tensor] = {"teacher": levels}
        outputs["commitment"] = deepest.new_zeros(())
        if self.logical is not None:
            outputs["logical"], outputs["commitment"] = self.logical(levels, deepest, category_index)
        if self.structural is not None:
            outputs["structural"] = self.structural(levels)
        return outputs

    def unsmoothed_maps(
        self, images: torch.Tensor, category_index: torch.Tensor | None = None, skip: Collection[str] = ()
    ) -> dict[str, torch.Tensor]:
        """Un-normalised map of each active part before Gaussian smoothing; the global one is constant.

        With several categories and no ``category_index`` (inference, export) each image is routed to the category
        whose global Gaussian is nearest; that category's text prior and patch Gaussians then score it. Prior parts
        named in ``skip`` are not computed (a refit of the normalisation that already holds them).
        """
        *levels, deepest = self.encoder(images)
        global_distances = self.global_prior.distances(levels) if self.global_prior is not None else None
        if category_index is None:
            category_index = self._route(levels, global_distances)
        outputs = self._reconstruct_features(levels, deepest, category_index)
        maps = {
            branch: reconstruction_map(outputs["teacher"], outputs[branch], self.input_size)
            for branch in ("logical", "structural")
            if branch in outputs
        }
        if global_distances is not None and "global" not in skip:
            distance = global_distances.amin(dim=1)
            maps["global"] = distance.reshape(-1, 1, 1, 1).expand(-1, 1, *self.input_size)
        if self.patch_prior is not None and "patch" not in skip:
            distance = self.patch_prior(levels, category_index)
            maps["patch"] = F.interpolate(distance, size=self.input_size, mode="bilinear", align_corners=False)
        if self.invariant_prior is not None and "invariant" not in skip:
            distance = self.invariant_prior(self._view_levels(images))
            maps["invariant"] = distance.reshape(-1, 1, 1, 1).expand(-1, 1, *self.input_size)
        if self.region_prior is not None and "region" not in skip:
            maps["region"] = self.region_prior(levels, self.input_size, category_index)
        if self.part_prior is not None and "part" not in skip:
            distance = self.part_prior(images, category_index)
            maps["part"] = distance.reshape(-1, 1, 1, 1).expand(-1, 1, *self.input_size)
        if self.part_in_map and "part_map" not in skip:
            maps["part_map"] = self.part_prior.part_map(images, category_index)
        return maps

    def region_distances(self, images: torch.Tensor, category_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, R) raw distance of each region to its Gaussian (what the region prior's per-region scale is fitted
        on); without ``category_index`` the category is routed as in :meth:`unsmoothed_maps`."""
        *levels, _ = self.encoder(images)
        if category_index is None:
            category_index = self._route(levels)
        return self.region_prior.distances(levels, category_index)

    def _route(self, levels: list[torch.Tensor], global_distances: torch.Tensor | None = None) -> torch.Tensor | None:
        """Each image's category by the nearest global (or routing-only) Gaussian; ``None`` for one category.
        ``global_distances``: the global prior's distances when the caller already has them."""
        if self.num_categories == 1:
            return None
        if self.router is not None:
            return GlobalNormalityPrior.route(self.router.distances(levels))
        if global_distances is None:
            global_distances = self.global_prior.distances(levels)
        return GlobalNormalityPrior.route(global_distances)

    def raw_maps(
        self, images: torch.Tensor, category_index: torch.Tensor | None = None, skip: Collection[str] = ()
    ) -> dict[str, torch.Tensor]:
        """Un-normalised, smoothed map of each active part (but ``skip``): what the quantile normalisation is fitted
        on."""
        return {
            part: part_map if part in IMAGE_LEVEL else self.blur(part_map)
            for part, part_map in self.unsmoothed_maps(images, category_index, skip).items()
        }

    @property
    def image_level_parts(self) -> tuple[str, ...]:
        """Parts that add one value per image to the score instead of painting the map."""
        return tuple(part for part in IMAGE_LEVEL if not (part == "global" and self.global_in_map))

    @property
    def local_score_parts(self) -> tuple[str, ...]:
        """The map parts whose fused map's maximum enters the image score."""
        return tuple(part for part in self.score_parts if part not in self.image_level_parts)

    def local_score(self, fused_map: torch.Tensor) -> torch.Tensor:
        """The image score's share from the scored parts' fused (smoothed) map: its maximum (calibrated on normal
        images' maxima when ``calibrated_local_score`` is on), times ``local_score_weight``."""
        maximum = torch.amax(fused_map, dim=(-3, -2, -1))
        if self.local_score_norm is not None:
            share = sum(self.score_weights[part] for part in self.local_score_parts)
            maximum = share * self.local_score_norm(maximum)
        return maximum if self.local_score_weight == 1.0 else self.local_score_weight * maximum

    def fit_local_score(self, raw: dict[str, list[torch.Tensor]]) -> None:
        """Fit the calibration of the local maximum from normal images' smoothed raw maps (``raw_maps``, one list
        entry per image), after each part's normalisation is fitted: fusing smoothed maps equals smoothing the fused
        one (linear blur, affine normalisation)."""
        parts = self.local_score_parts
        if self.local_score_norm is None or not parts:
            return
        fused = (
            self.fuse({part: raw[part][index][None] for part in parts}, self.score_weights)
            for index in range(len(raw[parts[0]]))
        )
        self.local_score_norm.fit(torch.stack([torch.amax(fused_map) for fused_map in fused]).cpu())

    @property
    def current_invariant_weight(self) -> float:
        """The invariant prior's weight the image score uses: the chosen one (``choose_invariant_weight``) or the one
        the model was built with (what rescoring scripts rescale from)."""
        return self.current_weight("invariant")

    @property
    def current_part_weight(self) -> float:
        """The part prior's weight the image score uses: the chosen one (``choose_part_weight``) or the built one."""
        return self.current_weight("part")

    def current_weight(self, prior: str) -> float:
        """``prior``'s ("invariant" or "part") image-score weight: its buffer when chosen at fit time, else as built."""
        if getattr(self, f"choose_{prior}_weight"):
            return float(getattr(self, f"{prior}_weight"))
        return self.built_weight(prior)

    def built_weight(self, prior: str) -> float:
        """``prior``'s ("invariant" or "part") image-score weight as configured: what a chosen weight must beat."""
        return self._weight_built[prior]

    def set_invariant_weight(self, weight: float, aurocs: dict[float, float] | None = None) -> None:
        """Set the chosen invariant weight (``choose_invariant_weight``); see :meth:`set_chosen_weight`."""
        self.set_chosen_weight("invariant", weight, aurocs)

    def set_chosen_weight(self, prior: str, weight: float, aurocs: dict[float, float] | None = None) -> None:
        """Set ``prior``'s chosen weight: the buffer a checkpoint saves and the share the image score (and so the
        exported graph) reads; ``aurocs``: the separations it was chosen by, per candidate."""
        getattr(self, f"{prior}_weight").fill_(float(weight))
        if aurocs is not None:
            values = [aurocs[candidate] for candidate in CHOSEN_WEIGHT_CANDIDATES[prior]]
            getattr(self, f"{prior}_weight_aurocs").copy_(torch.tensor(values, dtype=torch.float64))
        getattr(self, f"{prior}_weight_chosen").fill_(True)
        self._apply_chosen_weights()

    def _apply_chosen_weights(self) -> None:
        _, region_weight, part_map_weight = self._weights_built_with
        for weights, built in (
            (self.fusion_weights, self._weights_built_with[0]),
            (self.score_weights, self._score_weights_built_with),
        ):
            shares = fusion_shares(
                built, self.current_invariant_weight, region_weight, self.current_part_weight, part_map_weight
            )
            for prior in ("invariant", "part"):
                if getattr(self, f"choose_{prior}_weight"):
                    weights[prior] = shares[prior]

    def part_free_image_level_score(self, distances: dict[str, torch.Tensor]) -> torch.Tensor:
        """The image-level priors' share of the image score without the part prior, in units of one ``part_weight``
        (so ``this + weight x part distance`` ranks images as the image score's image-level part does at that
        weight); ``distances``: :meth:`image_level_distances`."""
        unit = fusion_shares(self._score_weights_built_with, part_weight=1.0)["part"]
        score = torch.zeros_like(distances["part"], dtype=torch.float64)
        for part in self.image_level_parts:
            if part != "part" and part in self.score_parts:
                score = score + self.score_weights[part] / unit * distances[part].double()
        return score

    @torch.no_grad()
    def image_level_distances(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B,) normalised distance of each pre-processed image to each active image-level prior (global, invariant,
        part: what ``choose_invariant_weight`` and ``choose_part_weight`` weigh; the reconstruction branches are not
        run)."""
        *levels, _ = self.encoder(images)
        raw, global_distances = {}, None
        if self.global_prior is not None:
            global_distances = self.global_prior.distances(levels)
            raw["global"] = global_distances.amin(dim=1)
        if self.invariant_prior is not None:
            raw["invariant"] = self.invariant_prior(self._view_levels(images)).reshape(-1)
        if self.part_prior is not None:
            raw["part"] = self.part_prior(images, self._route(levels, global_distances)).reshape(-1)
        return {part: self.image_level_normalised(part, value) for part, value in raw.items()}

    def normalizer(self, part: str) -> QuantileMapNormalizer | None:
        """The normalisation of ``part`` (one of :data:`PARTS`; ``None`` for an opt-in prior's (invariant, region, part)
        when it is off)."""
        return getattr(self, f"{part}_norm")

    def fuse(self, raw: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> torch.Tensor:
        """Normalise each part's map (or image-level value) on its normal-image quantiles and take the weighted sum
        (with the map's ``fusion_weights`` shares, or ``weights``: the image score's)."""
        normalizers = {part: self.normalizer(part) for part in raw}
        return fuse_normalised(raw, normalizers, self.fusion_weights if weights is None else weights, self.map_floors)

    def map_normalised(self, part: str, raw_map: torch.Tensor) -> torch.Tensor:
        """One map part normalised as :meth:`fuse` adds it (the part map floored), for scripts that reweigh parts."""
        normalised = self.normalizer(part)(raw_map)
        return floored(normalised, self.map_floors[part]) if part in self.map_floors else normalised

    def forward(
        self, images: torch.Tensor, category_index: torch.Tensor | None = None
    ) -> dict[str, list[torch.Tensor] | torch.Tensor] | InferenceBatch:
        """Training: features for the loss. Eval: ``InferenceBatch(pred_score, anomaly_map)``.

        The fused map is smoothed once, after fusion. The blur is linear with unit gain and the normalisation is affine,
        so this equals fusing the separately smoothed maps that the normalisation was fitted on (to float rounding),
        at a quarter of the blur cost. It is also what keeps the OpenVINO export exact: OpenVINO's CPU plugin
        (2026.4, f32) mis-adds the outputs of two large-kernel (>= 17 taps) convolutions, so summing separately
        blurred maps came out wrong by up to the size of a whole map (issue 13; ``tests/models/test_export_parity.py``).
        """
        if self.training:
            return self.reconstruct(images, category_index)
        maps = self.unsmoothed_maps(images, category_index)
        image_level = {part: maps.pop(part) for part in self.image_level_parts if part in maps}
        anomaly_map = self.blur(self.fuse(maps))
        scored = {part: part_map for part, part_map in maps.items() if part in self.score_parts}
        if len(scored) == len(maps) and self.score_weights is self.fusion_weights:
            pred_score = self.local_score(anomaly_map)
        elif scored:  # the image score reads fewer parts than the map shows, or weighs them apart
            pred_score = self.local_score(self.blur(self.fuse(scored, self.score_weights)))
        else:
            pred_score = torch.zeros(images.shape[0], device=images.device, dtype=anomaly_map.dtype)
        scored_values = {part: value[:, 0, 0, 0] for part, value in image_level.items() if part in self.score_parts}
        if self.image_level_fusion == "max" and len(scored_values) > 1:
            pred_score = pred_score + self.image_level_max(scored_values)
        else:
            for part, value in scored_values.items():
                # the same score as with the constant map in the fused map: max(m + c) = max(m) + c
                pred_score = pred_score + self.score_weights[part] * self.image_level_normalised(part, value)
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)

    def image_level_normalised(self, part: str, value: torch.Tensor) -> torch.Tensor:
        """An image-level prior's distance on its normal images' scale, as the image score reads it (the part prior's
        floored at ``part_floor``); one place for it, so rescoring scripts read what the model scores."""
        normalised = self.normalizer(part)(value)
        if part == "part" and self.part_floor is not None:
            normalised = normalised.clamp_min(self.part_floor)
        return normalised

    def image_level_max(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """``image_level_fusion="max"``: the largest normalised image-level distance, times the parts' summed shares
        (so with one part, or parts that agree, it equals the weighted sum)."""
        normalised = torch.stack([self.image_level_normalised(part, value) for part, value in values.items()])
        share = sum(self.score_weights[part] for part in values)
        return share * torch.amax(normalised, dim=0)


def fusion_shares(
    fusion_weights: Sequence[float],
    invariant_weight: float = 0.0,
    region_weight: float = 0.0,
    part_weight: float = 0.0,
    part_map_weight: float = 0.0,
) -> dict[str, float]:
    """Each part's share of the fused map / score: every weight divided by the sum of the four map weights (three
    ``fusion_weights`` = older configs: the patch map gets the structural weight). One place for it, so a rescoring
    script sets exactly what building the model with these weights would."""
    map_weights = [*fusion_weights, fusion_weights[1]][:4]
    total = float(sum(map_weights))
    weights = [*map_weights, float(invariant_weight), float(region_weight), float(part_weight), float(part_map_weight)]
    return {part: float(weight) / total for part, weight in zip(PARTS, weights, strict=True)}


def _pad_candidate_aurocs(module: NpgmfModel, state_dict: dict, prefix: str, *_: object) -> None:
    """Before a state dict is loaded: a checkpoint saved with fewer candidates (``part_weight_aurocs`` had 6 entries
    before 32 and 64 were added) gets 0 (not measured) for the candidates it did not have, so it still loads."""
    for prior, candidates in CHOSEN_WEIGHT_CANDIDATES.items():
        key = f"{prefix}{prior}_weight_aurocs"
        saved = state_dict.get(key)
        if getattr(module, f"choose_{prior}_weight") and saved is not None and 0 < len(saved) < len(candidates):
            state_dict[key] = torch.cat([saved, saved.new_zeros(len(candidates) - len(saved))])


def _restore_chosen_shares(module: NpgmfModel, _incompatible_keys: object) -> None:
    """After a state dict is loaded: the chosen weights' shares from the loaded ``invariant_weight`` /
    ``part_weight`` buffers (a share is a plain float, which a state dict does not hold)."""
    module._apply_chosen_weights()


def _checked_blur(sigma: float, input_size: tuple[int, int]) -> SeparableGaussianBlur:
    """The maps' blur, refused with the parameter's name where it cannot run: sigma <= 0, or a kernel whose half is
    not smaller than the map (reflect padding fails deep inside torch at the first image)."""
    if not float(sigma) > 0:
        msg = f"blur_sigma must be > 0 (pixels of the input), got {sigma}"
        raise ValueError(msg)
    blur = SeparableGaussianBlur(sigma=float(sigma))
    if blur.half >= min(input_size):
        msg = (
            f"blur_sigma={sigma} needs a {2 * blur.half + 1} px kernel, too large for input size {tuple(input_size)}:"
            " the maps' sides must exceed half the kernel; lower blur_sigma"
        )
        raise ValueError(msg)
    return blur


def _checked_score_parts(score_parts: Sequence[str] | None, active: Sequence[str]) -> tuple[str, ...]:
    """The parts of the image score: all active ones by default; a named part must exist and be switched on."""
    if score_parts is None:  # the part map localises; the part prior's image-level distance already scores the parts
        return tuple(part for part in active if part != "part_map")
    chosen = tuple(score_parts)
    unknown = [part for part in chosen if part not in PARTS]
    if unknown or not chosen:
        msg = f"score_parts must be a non-empty list from {list(PARTS)}, got {list(chosen)}"
        raise ValueError(msg)
    inactive = [part for part in chosen if part not in active]
    if inactive:
        msg = f"score_parts names part(s) {inactive} that this model has switched off (active: {list(active)})"
        raise ValueError(msg)
    return chosen


def _bottleneck_cells(encoder: FrozenEncoder, input_size: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """Spatial size of the OCE output for the fixed input size (one dummy encoder pass; kernel 3, padding 1)."""
    deepest = encoder(torch.zeros(1, 3, *input_size))[-1]
    cells = []
    for side in deepest.shape[-2:]:
        for stride in strides:
            side = (side - 1) // stride + 1
        cells.append(int(side))
    return cells[0], cells[1]
