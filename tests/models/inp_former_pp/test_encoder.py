"""The frozen DINOv2 encoder: paper's block indices, early stop, official position-embedding interpolation."""

import pytest
import timm
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_npgmf.models.inp_former_pp.components.encoder import (
    DinoEncoder,
    default_encoder_layers,
    interpolate_pos_embed,
)

SMALL = {"depth": 12, "embed_dim": 32, "num_heads": 2, "img_size": 56}


def test_default_layers_are_the_papers_and_scale_with_depth():
    assert default_encoder_layers(12) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert default_encoder_layers(24) == [4, 6, 8, 10, 12, 14, 16, 18]  # official ViT-L setting
    assert default_encoder_layers(4) == [1, 1, 1, 2, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="at least one block"):
        default_encoder_layers(0)


def test_blocks_after_the_last_read_one_are_dropped_and_everything_is_frozen():
    encoder = DinoEncoder("vit_base_patch14_reg4_dinov2", False, None, backbone_kwargs=SMALL)
    assert len(encoder.blocks) == 10  # blocks 0..9 of 12
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    encoder.train()
    assert not encoder.training


def test_outputs_equal_timms_own_intermediates_at_the_native_grid():
    torch.manual_seed(0)
    encoder = DinoEncoder("vit_base_patch14_reg4_dinov2", False, None, backbone_kwargs=SMALL)
    vit = timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False, dynamic_img_size=True, **SMALL)
    missing, _ = vit.load_state_dict(encoder.state_dict(), strict=False)
    assert all(key.startswith(("blocks.10", "blocks.11", "norm.", "head")) for key in missing)
    images = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        ours, grid = encoder(images)
        theirs = vit.forward_intermediates(
            images, indices=encoder.layers, norm=False, output_fmt="NLC", intermediates_only=True
        )
    assert grid == (4, 4)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.shape == (2, 16, 32)
        # same weights, our attention vs timm's fused path in float32 through <= 4 blocks, activations ~10: ~1e-6 each
        assert torch.allclose(mine, reference, atol=1e-5)


def test_position_embeddings_are_interpolated_like_dinov2():
    torch.manual_seed(0)
    pos = torch.randn(1, 25, 8)
    ours = interpolate_pos_embed(pos, (5, 5), (8, 8))
    # DINOv2's interpolate_pos_encoding: scale factor (8 + 0.1) / 5, bicubic, no antialiasing.
    image = pos.reshape(1, 5, 5, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(image, scale_factor=(8.1 / 5, 8.1 / 5), mode="bicubic", antialias=False)
    # the same bicubic call on values ~N(0,1): equal up to float32 op order (~1e-7)
    assert torch.allclose(ours, expected.permute(0, 2, 3, 1).reshape(1, 64, 8), atol=1e-6)
    size_based = F.interpolate(image, size=(8, 8), mode="bicubic", antialias=True)  # timm's way differs
    # timm's size-based antialiased interpolation differs by O(0.1) on random embeddings, >> 1e-3
    assert not torch.allclose(ours, size_based.permute(0, 2, 3, 1).reshape(1, 64, 8), atol=1e-3)
    assert interpolate_pos_embed(pos, (5, 5), (5, 5)) is pos


def test_input_not_a_multiple_of_the_patch_is_named():
    encoder = DinoEncoder("vit_base_patch14_reg4_dinov2", False, None, backbone_kwargs=SMALL)
    with pytest.raises(ValueError, match="multiple of the ViT patch size"):
        encoder(torch.zeros(1, 3, 50, 56))


def test_bad_layers_and_non_vit_backbones_are_named():
    with pytest.raises(ValueError, match="encoder_layers"):
        DinoEncoder("vit_base_patch14_reg4_dinov2", False, None, layers=[2, 12], backbone_kwargs=SMALL)
    with pytest.raises(ValueError, match="not a timm ViT"):
        DinoEncoder("resnet18", False, None)
