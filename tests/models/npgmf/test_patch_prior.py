import pytest
import torch

from anomalib_npgmf.models.npgmf.components import PatchNormalityPrior, patch_features
from anomalib_npgmf.models.npgmf.components.global_prior import ledoit_wolf_covariance


def _levels(batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [
        torch.randn(batch, 4, 8, 8, generator=generator),
        torch.randn(batch, 6, 4, 4, generator=generator),
        torch.randn(batch, 8, 2, 2, generator=generator),
    ]


def test_features_are_the_selected_channels_at_the_middle_level_resolution():
    generator = torch.Generator().manual_seed(0)
    levels = _levels(2, generator)
    index = torch.tensor([0, 5, 12])  # a channel of each level
    features = patch_features(levels, index)
    assert features.shape == (2, 16, 3)
    pooled = levels[0][:, 0].reshape(2, 4, 2, 4, 2).mean(dim=(2, 4))
    # same pooling in another reduction order (float32): allclose's rtol 1e-5 is ~100 ulps
    assert torch.allclose(features[:, :, 0], pooled.flatten(1))
    assert torch.allclose(features[:, :, 1], levels[1][:, 1].flatten(1))
    upsampled = torch.nn.functional.interpolate(levels[2][:, 2:3], size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(features[:, :, 2], upsampled.flatten(1))


def test_distance_is_the_per_position_mahalanobis_distance_by_hand():
    generator = torch.Generator().manual_seed(1)
    prior = PatchNormalityPrior([4, 6, 8], (4, 4), dim=5)
    train = _levels(12, generator)
    assert torch.equal(prior(train), torch.zeros(12, 1, 4, 4))  # zero before fitting
    prior.fit(prior.features(train))
    test = _levels(2, generator)
    distance = prior(test)
    assert distance.shape == (2, 1, 4, 4)
    features, fitted = prior.features(test).double(), prior.features(train).double()
    position = 6
    samples = fitted[:, position]
    precision = torch.linalg.inv(ledoit_wolf_covariance(samples))
    centred = features[:, position] - samples.mean(dim=0)
    expected = torch.sqrt(torch.einsum("bi,ij,bj->b", centred, precision, centred))
    # the prior runs its 5-d quadratic form in float32 (by design) against this float64 one: a few ulps x condition
    assert torch.allclose(distance.flatten(1)[:, position].double(), expected, rtol=1e-4)
    # a normal training image lies closer to its Gaussian than a shifted copy of it
    shifted = [level + 3.0 for level in train]
    assert (prior(shifted).mean() > prior(train).mean()).item()


def test_channel_subset_is_seeded_and_bad_input_is_named():
    first = PatchNormalityPrior([4, 6, 8], (4, 4), dim=5)
    second = PatchNormalityPrior([4, 6, 8], (4, 4), dim=5)
    assert torch.equal(first.channel_index, second.channel_index)
    assert PatchNormalityPrior([4, 6, 8], (4, 4), dim=100).channel_index.numel() == 18
    with pytest.raises(ValueError, match="at least 2 normal images"):
        first.fit(torch.zeros(1, 16, 5))
    with pytest.raises(ValueError, match="NaN"):
        first.fit(torch.full((3, 16, 5), float("nan")))
