"""Residual learning pieces: residual of unit features, pseudo-anomaly masks, token corruption, head shape."""

import torch

from anomalib_npgmf.models.inp_former_pp.components.residual import (
    ResidualHead,
    corrupt_tokens,
    random_box_masks,
    unit_residual,
)


def test_unit_residual_ignores_scale_and_is_zero_for_a_perfect_reconstruction():
    encoder = [torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)]
    # unit-normalising 3x the features in float32 leaves residuals of a few ulps of 1 (1.2e-7 each)
    assert torch.allclose(unit_residual(encoder, [3.0 * e for e in encoder]), torch.zeros(2, 4, 3, 3), atol=1e-6)
    decoder = [torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)]
    decoder[0][:, 0], decoder[1][:, 1] = 1.0, 1.0
    encoder = [decoder[1].clone(), decoder[1].clone()]
    # group 0: |e1 - e0| = (1, 1, 0, 0); group 1: 0 -> mean (0.5, 0.5, 0, 0)
    expected = torch.tensor([0.5, 0.5, 0.0, 0.0]).view(1, 4, 1, 1).expand(2, 4, 3, 3)
    # the same float32 formula written out: allclose's rtol 1e-5 is ~100 ulps
    assert torch.allclose(unit_residual(encoder, decoder), expected)


def test_box_masks_are_binary_non_empty_and_seeded():
    generator = torch.Generator().manual_seed(0)
    masks = random_box_masks(5, (8, 6), generator=generator)
    assert masks.shape == (5, 1, 8, 6)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert (masks.flatten(1).sum(dim=1) >= 1).all()
    again = random_box_masks(5, (8, 6), generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


def test_corruption_touches_only_masked_tokens_with_noise_relative_to_the_layer_rms():
    tokens = [torch.ones(1, 4, 100), 10 * torch.ones(1, 4, 100)]
    mask = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    corrupted = corrupt_tokens(tokens, mask, noise_scale=0.5, generator=torch.Generator().manual_seed(0))
    for original, noisy in zip(tokens, corrupted, strict=True):
        assert torch.equal(noisy[:, [0, 2]], original[:, [0, 2]])
        noise_std = float((noisy[:, [1, 3]] - original[:, [1, 3]]).std())
        assert 0.4 * float(original[0, 0, 0]) < noise_std < 0.6 * float(original[0, 0, 0])


def test_head_gives_one_logit_per_token():
    head = ResidualHead(32)
    assert head(torch.rand(2, 32, 4, 5)).shape == (2, 1, 4, 5)
