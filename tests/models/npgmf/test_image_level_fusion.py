"""How the image-level priors join the image score (issue 18): ``image_level_fusion="max"`` takes the largest of their
normalised distances times their summed shares, instead of the weighted sum. The map is unchanged either way."""

import pytest
import torch

from anomalib_npgmf import Npgmf

from .conftest import IMAGE_SIZE, TINY_NPGMF, fitted_tiny_npgmf


def _images() -> torch.Tensor:
    return torch.rand((8, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))


def _overlapping(models: list, images: torch.Tensor) -> None:
    """Move the invariant prior's normalisation onto the global prior's normalised range (same median and spread) in
    every model: fitted on 8 noise images, the invariant distance would otherwise exceed the global one on every image,
    and max would be a plain rescaling that could not tell the two fusions apart."""
    net = models[0].model
    with torch.no_grad():
        raw = net.unsmoothed_maps(images)
        invariant, global_part = raw["invariant"][:, 0, 0, 0], net.normalizer("global")(raw["global"][:, 0, 0, 0])
    width = 0.1 * float(invariant.max() - invariant.min()) / float(global_part.max() - global_part.min())
    low = float(invariant.median()) - width * float(global_part.median()) / 0.1
    for model in models:
        model.model.invariant_norm.q_low.fill_(low)
        model.model.invariant_norm.q_high.fill_(low + width)


def _normalised_parts(net: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    raw = net.unsmoothed_maps(images)
    return {part: net.normalizer(part)(raw[part][:, 0, 0, 0]) for part in ("global", "invariant")}


def test_the_score_is_the_local_part_plus_the_largest_image_level_part_times_their_shares():
    images = _images()
    summed = fitted_tiny_npgmf(use_invariant_prior=True)
    maxed = fitted_tiny_npgmf(use_invariant_prior=True, image_level_fusion="max")
    net = maxed.model
    _overlapping([summed, maxed], images)
    with torch.no_grad():
        sum_output, max_output = summed.model(images), net(images)
        parts = _normalised_parts(net, images)
    torch.testing.assert_close(max_output.anomaly_map, sum_output.anomaly_map, rtol=0, atol=0)
    shares = {part: net.fusion_weights[part] for part in parts}
    local = sum_output.pred_score - sum(shares[part] * parts[part] for part in parts)
    # the two parts disagree on which image is most anomalous, so max and sum differ and the check can fail
    assert not torch.equal(parts["global"] > parts["invariant"], torch.ones(8, dtype=torch.bool))
    assert not torch.equal(parts["global"] > parts["invariant"], torch.zeros(8, dtype=torch.bool))
    expected = local + sum(shares.values()) * torch.maximum(parts["global"], parts["invariant"])
    # float32 in another order: a few units in the last place of the score's magnitude
    torch.testing.assert_close(max_output.pred_score, expected, rtol=8 * 2.0**-23, atol=1e-6)
    assert not torch.allclose(max_output.pred_score, sum_output.pred_score)


def test_with_one_image_level_part_max_is_the_sum():
    images = _images()
    with torch.no_grad():
        summed = fitted_tiny_npgmf().model(images).pred_score
        maxed = fitted_tiny_npgmf(image_level_fusion="max").model(images).pred_score
    assert summed.std() > 0  # a spread, so equality is not of constants
    torch.testing.assert_close(maxed, summed, rtol=0, atol=0)


def test_an_unknown_fusion_is_named():
    with pytest.raises(ValueError, match="image_level_fusion must be one of \\['sum', 'max'\\], got 'mean'"):
        Npgmf(**{**TINY_NPGMF, "image_level_fusion": "mean"})
