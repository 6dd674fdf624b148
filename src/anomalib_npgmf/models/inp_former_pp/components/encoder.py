"""Frozen DINOv2 ViT that stops after the deepest block the model reads.

INP-Former reads the outputs of blocks 2-9 of a 12-block ViT; blocks 10 and 11 are never used, so they are dropped
at construction (less memory, ~1/6 less encoder compute than running all 12 as anomalib's ``InpFormer`` does).

Position embeddings are interpolated the way the DINOv2 code the paper used does it (bicubic with a scale factor of
``(grid + 0.1) / old_grid``, no antialiasing, untouched at the native grid), not timm's size-based antialiased
resampling: the pretrained features at 392 px then match the official implementation's.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from anomalib_npgmf.models.common import create_timm_encoder

PAPER_DEPTH = 12
PAPER_LAYERS = (2, 3, 4, 5, 6, 7, 8, 9)
POS_EMBED_OFFSET = 0.1


def default_encoder_layers(depth: int) -> list[int]:
    """The paper's blocks 2..9 of a 12-block ViT, scaled to ``depth`` (ViT-L, 24 blocks: 4, 6, ..., 18).

    Tiny test backbones get repeated indices (depth 4: 1, 1, 1, 2, 2, 2, 3, 3): still eight features to fuse, as the
    decoder expects, without inventing blocks that do not exist.
    """
    if depth < 1:
        msg = f"the backbone has {depth} blocks; a ViT with at least one block is needed"
        raise ValueError(msg)
    return [min(depth - 1, math.floor(index * depth / PAPER_DEPTH + 0.5)) for index in PAPER_LAYERS]


def interpolate_pos_embed(
    patch_pos_embed: torch.Tensor, old_grid: tuple[int, int], grid: tuple[int, int]
) -> torch.Tensor:
    """Patch position embeddings ``(1, old_h * old_w, C)`` resampled to ``grid`` as DINOv2's own code does."""
    if tuple(grid) == tuple(old_grid):
        return patch_pos_embed
    channels = patch_pos_embed.shape[-1]
    as_image = patch_pos_embed.reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    scale = ((grid[0] + POS_EMBED_OFFSET) / old_grid[0], (grid[1] + POS_EMBED_OFFSET) / old_grid[1])
    resized = F.interpolate(as_image.float(), scale_factor=scale, mode="bicubic", align_corners=False, antialias=False)
    return resized.to(patch_pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], channels)


class DinoEncoder(nn.Module):
    """Frozen timm ViT (DINOv2, optionally with registers) returning patch tokens of selected blocks.

    Args:
        architecture: timm model name, e.g. ``vit_base_patch14_reg4_dinov2``.
        pre_trained: Load pretrained weights from the local file ``weights_path`` (fails at once without one).
        weights_path: Local timm weights file of ``architecture``.
        layers: Block indices whose outputs are returned (``None``: the paper's 2..9 scaled to the depth).
        backbone_kwargs: Extra timm arguments (tests shrink ``depth``/``embed_dim``/``num_heads``/``img_size``).
    """

    def __init__(
        self,
        architecture: str,
        pre_trained: bool,
        weights_path: str | None,
        layers: Sequence[int] | None = None,
        backbone_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        kwargs = {**(backbone_kwargs or {}), "dynamic_img_size": True}
        try:
            vit = create_timm_encoder(architecture, pre_trained, weights_path, parameter="backbone_weights", **kwargs)
        except TypeError as error:  # a CNN name: timm rejects the ViT arguments
            msg = f"backbone '{architecture}' is not a timm ViT ({error}); use e.g. 'vit_base_patch14_reg4_dinov2'"
            raise ValueError(msg) from error
        missing = [name for name in ("patch_embed", "blocks", "pos_embed") if getattr(vit, name, None) is None]
        if missing:
            msg = f"backbone '{architecture}' is not a ViT with absolute position embeddings (no {', '.join(missing)})"
            raise ValueError(msg)
        depth = len(vit.blocks)
        self.layers = [int(index) for index in (layers if layers is not None else default_encoder_layers(depth))]
        if not self.layers or any(not 0 <= index < depth for index in self.layers):
            msg = f"encoder_layers must be block indices in [0, {depth - 1}] of '{architecture}', got {self.layers}"
            raise ValueError(msg)
        self.embed_dim = int(vit.embed_dim)
        self.num_heads = int(vit.blocks[0].attn.num_heads)
        self.patch_size = tuple(int(side) for side in vit.patch_embed.patch_size)
        self.pos_grid = tuple(int(side) for side in vit.patch_embed.grid_size)
        self.no_embed_class = bool(getattr(vit, "no_embed_class", False))
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.reg_token = getattr(vit, "reg_token", None)
        self.pos_embed = vit.pos_embed
        self.norm_pre = vit.norm_pre
        self.blocks = nn.ModuleList(vit.blocks[: max(self.layers) + 1])
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "DinoEncoder":
        """Stay in eval mode: the encoder is frozen (no dropout, no drop-path) whatever the parent does."""
        del mode
        return super().train(False)

    def grid_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Token grid of an input of ``image_size`` pixels."""
        return image_size[0] // self.patch_size[0], image_size[1] // self.patch_size[1]

    def _tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        patches = self.patch_embed.proj(images)
        grid = (int(patches.shape[-2]), int(patches.shape[-1]))
        patches = self.patch_embed.norm(patches.flatten(2).transpose(1, 2))
        prefix_tokens = [token for token in (self.cls_token, self.reg_token) if token is not None]
        prefix = [token.expand(images.shape[0], -1, -1) for token in prefix_tokens]
        if self.no_embed_class:
            patches = patches + interpolate_pos_embed(self.pos_embed, self.pos_grid, grid)
            tokens = torch.cat([*prefix, patches], dim=1)
        else:  # position embedding covers the class token too (DINOv2 without registers)
            cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
            patches = patches + interpolate_pos_embed(patch_pos, self.pos_grid, grid)
            tokens = torch.cat([prefix[0] + cls_pos, *prefix[1:], patches], dim=1)
        return self.norm_pre(tokens), grid

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Patch tokens ``(B, N, C)`` of each requested block (prefix tokens removed) and the token grid."""
        for side, patch in zip(images.shape[-2:], self.patch_size, strict=True):
            if side % patch:
                msg = f"input size {tuple(images.shape[-2:])} is not a multiple of the ViT patch size {self.patch_size}"
                raise ValueError(msg)
        tokens, grid = self._tokens(images)
        outputs: dict[int, torch.Tensor] = {}
        wanted = set(self.layers)
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in wanted:
                outputs[index] = tokens[:, self.num_prefix_tokens :]
        return [outputs[index] for index in self.layers], grid
