"""INP-Former / INP-Former++ as a plain ``nn.Module``.

Training returns the tensors the losses need; eval returns anomalib's ``InferenceBatch(pred_score, anomaly_map)``.
"""

from collections.abc import Sequence

import torch
from anomalib.data import InferenceBatch
from torch import nn

from .components.encoder import DinoEncoder
from .components.layers import FeedForward, InpExtractor, InpGuidedBlock, init_trainable
from .components.residual import ResidualHead, corrupt_tokens, per_image_generators, random_box_masks, unit_residual
from .components.scoring import MapScorer, cosine_distance_map


def halves(count: int, groups: int = 2) -> list[list[int]]:
    """Consecutive index groups of ``range(count)`` (official: ``[[0, 1, 2, 3], [4, 5, 6, 7]]``)."""
    if not 1 <= groups <= count:
        msg = f"cannot split {count} features into {groups} groups"
        raise ValueError(msg)
    bounds = [round(index * count / groups) for index in range(groups + 1)]
    return [list(range(bounds[index], bounds[index + 1])) for index in range(groups)]


def _fuse(tokens: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack(list(tokens), dim=1).mean(dim=1)


class InpFormerPlusPlusModel(nn.Module):
    """Frozen ViT encoder, INP extractor, bottleneck MLP, INP-guided decoder, and optionally a residual head.

    Args:
        backbone: timm DINOv2 ViT name.
        pre_trained: Load the backbone from the local file ``backbone_weights``.
        backbone_weights: Local weights file of ``backbone``.
        backbone_kwargs: Extra timm arguments (e.g. a smaller ``depth`` for tests).
        encoder_layers: Blocks read by the model (``None``: paper's 2..9 scaled to the depth).
        num_groups: Feature groups compared at the end (official: 2).
        num_inps: Number of INPs M (official: 6).
        residual_learning: Add the residual head (INP-Former++).
        residual_map_weight: Weight of the residual head's probability added to the cosine map.
        pseudo_noise_scale: Pseudo-anomaly noise std relative to the token RMS (residual head training).
        score_size, blur_kernel_size, blur_sigma, top_fraction: See :class:`MapScorer`.
    """

    def __init__(
        self,
        backbone: str = "vit_base_patch14_reg4_dinov2",
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        backbone_kwargs: dict | None = None,
        encoder_layers: Sequence[int] | None = None,
        num_groups: int = 2,
        num_inps: int = 6,
        residual_learning: bool = True,
        residual_map_weight: float = 0.5,
        pseudo_noise_scale: float = 1.0,
        score_size: int | None = 256,
        blur_kernel_size: int = 5,
        blur_sigma: float = 4.0,
        top_fraction: float = 0.01,
    ) -> None:
        super().__init__()
        if num_inps < 1:
            msg = f"num_inps must be >= 1, got {num_inps}"
            raise ValueError(msg)
        self.encoder = DinoEncoder(backbone, pre_trained, backbone_weights, encoder_layers, backbone_kwargs)
        dim, heads = self.encoder.embed_dim, self.encoder.num_heads
        depth = len(self.encoder.layers)
        self.groups = halves(depth, num_groups)
        self.extractor = InpExtractor(dim, heads, num_inps)
        self.bottleneck = FeedForward(dim, dim * 4)
        self.decoder = nn.ModuleList(InpGuidedBlock(dim, heads) for _ in range(depth))
        self.residual_learning = residual_learning
        self.residual_head = ResidualHead(dim) if residual_learning else None
        self.residual_map_weight = residual_map_weight
        self.pseudo_noise_scale = pseudo_noise_scale
        self.scorer = MapScorer(score_size, blur_kernel_size, blur_sigma, top_fraction)
        for module in self.trainable_modules():
            init_trainable(module)

    def trainable_modules(self) -> list[nn.Module]:
        """Everything but the frozen encoder (what the optimiser updates)."""
        modules: list[nn.Module] = [self.extractor, self.bottleneck, self.decoder]
        return [*modules, self.residual_head] if self.residual_head is not None else modules

    def reconstruct(
        self, layer_tokens: list[torch.Tensor], grid: tuple[int, int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Encoder groups, decoder groups (both ``(B, C, h, w)``), fused tokens and INPs of per-layer tokens."""
        fused = _fuse(layer_tokens)
        inps = self.extractor(fused)
        tokens = self.bottleneck(fused)
        decoded = []
        for block in self.decoder:
            tokens = block(tokens, inps)
            decoded.append(tokens)
        decoded = decoded[::-1]  # the last decoder block is paired with the shallowest encoder block
        encoder_groups = [self._as_map(_fuse([layer_tokens[i] for i in group]), grid) for group in self.groups]
        decoder_groups = [self._as_map(_fuse([decoded[i] for i in group]), grid) for group in self.groups]
        return encoder_groups, decoder_groups, fused, inps

    @staticmethod
    def _as_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid[0], grid[1])

    def token_map(self, encoder_groups: list[torch.Tensor], decoder_groups: list[torch.Tensor]) -> torch.Tensor:
        """Anomaly map on the token grid: mean cosine distance over groups (+ weighted residual probability)."""
        cosine = torch.stack(
            [cosine_distance_map(e, d) for e, d in zip(encoder_groups, decoder_groups, strict=True)], dim=0
        ).mean(dim=0)
        if self.residual_head is None or self.residual_map_weight == 0:
            return cosine
        probability = torch.sigmoid(self.residual_head(unit_residual(encoder_groups, decoder_groups)))
        return cosine + self.residual_map_weight * probability

    def forward(
        self, images: torch.Tensor, pseudo_seeds: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]] | InferenceBatch:
        """Training: tensors for :class:`~.loss.InpFormerLoss`. Eval: ``InferenceBatch(pred_score, anomaly_map)``.

        ``pseudo_seeds`` (training, residual head): one seed per image for its pseudo-anomaly, so the draw does not
        depend on which batch or DDP rank the image lands in; ``None`` uses the global RNG.
        """
        with torch.no_grad():
            layer_tokens, grid = self.encoder(images)
        encoder_groups, decoder_groups, fused, inps = self.reconstruct(layer_tokens, grid)
        if not self.training:
            score, anomaly_map = self.scorer(self.token_map(encoder_groups, decoder_groups), tuple(images.shape[-2:]))
            return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)
        outputs: dict[str, torch.Tensor | list[torch.Tensor]] = {
            "encoder_groups": encoder_groups,
            "decoder_groups": decoder_groups,
            "fused_tokens": fused,
            "inps": inps,
        }
        if self.residual_head is not None:
            generators = per_image_generators(pseudo_seeds) if pseudo_seeds is not None else None
            outputs.update(self.pseudo_anomaly_outputs(layer_tokens, grid, generators))
        return outputs

    def pseudo_anomaly_outputs(
        self,
        layer_tokens: list[torch.Tensor],
        grid: tuple[int, int],
        generators: Sequence[torch.Generator] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Residual-head logits on feature-space pseudo-anomalies and their target mask (training only)."""
        batch = layer_tokens[0].shape[0]
        mask = random_box_masks(batch, grid, generators, device=layer_tokens[0].device)
        corrupted = corrupt_tokens(layer_tokens, mask.flatten(1), self.pseudo_noise_scale, generators)
        with torch.no_grad():  # the residual loss trains the head only, never the reconstruction
            encoder_groups, decoder_groups, _, _ = self.reconstruct(corrupted, grid)
            residual = unit_residual(encoder_groups, decoder_groups)
        return {"residual_logits": self.residual_head(residual), "residual_target": mask}
