import pytest
import torch

from anomalib_npgmf.models.npgmf.components import CategoryPrior, encode_category_names
from anomalib_npgmf.models.npgmf.components.agc import _encode_prompts_cached, category_prompt, clip_text_dim


def test_prompt_formatting():
    assert category_prompt("breakfast_box") == "a photo of a breakfast box"
    with pytest.raises(ValueError, match="category"):
        category_prompt("  ")


def test_text_embedding_is_cached_and_deterministic():
    before = _encode_prompts_cached.cache_info()
    first = encode_category_names(["cache_probe_box"], "ViT-B-32")  # a name no other test encodes
    second = encode_category_names(["cache_probe_box"], "ViT-B-32")
    after = _encode_prompts_cached.cache_info()
    assert (after.misses, after.hits) == (before.misses + 1, before.hits + 1)
    assert torch.equal(first, second)
    assert first.shape == (1, clip_text_dim("ViT-B-32"))
    # F.normalize in float32: the norm is 1 to a few ulps (1.2e-7), well inside allclose's rtol 1e-5
    assert torch.allclose(first.norm(dim=-1), torch.ones(1))
    other = encode_category_names(["screw_bag"], "ViT-B-32")
    # different prompts give embeddings that differ by O(0.1), far beyond allclose's default
    assert not torch.allclose(first, other)


def test_prior_map_upsamples_to_any_stage_and_checks_shapes():
    prior = CategoryPrior(text_dim=8, out_channels=3, num_categories=2, grid=4)
    with pytest.raises(ValueError, match="does not fit"):
        prior.set_embedding(torch.zeros(1, 8))
    prior.set_embedding(torch.randn(2, 8))
    grid = prior.grid_map(5)
    assert grid.shape == (5, 3, 4, 4)
    assert CategoryPrior.at(grid, (16, 12)).shape == (5, 3, 16, 12)
    per_image = prior.grid_map(2, torch.tensor([1, 0]))
    assert not torch.allclose(per_image[0], per_image[1])


def test_unknown_clip_model_is_named():
    with pytest.raises(ValueError, match="unknown clip_model 'ViT-nope'"):
        clip_text_dim("ViT-nope")
