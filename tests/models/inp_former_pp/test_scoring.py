"""Map -> score: official kernel, top-1% mean, and the whole evaluation pipeline on known maps."""

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_npgmf.models.inp_former_pp.components.scoring import (
    MapScorer,
    cosine_distance_map,
    gaussian_kernel,
    top_fraction_mean,
)


def test_kernel_is_the_official_normalised_gaussian():
    kernel = gaussian_kernel(5, 4.0)
    # utils.get_gaussian_kernel: exp(-((x - 2)^2 + (y - 2)^2) / (2 * 16)), normalised to sum 1.
    raw = [[math.exp(-((x - 2) ** 2 + (y - 2) ** 2) / 32) for x in range(5)] for y in range(5)]
    total = sum(map(sum, raw))
    # float32 kernel against the float64 formula: taps < 0.05, so one rounding is < 3e-9
    assert torch.allclose(kernel, torch.tensor(raw) / total, atol=1e-7)
    assert kernel[2, 2] == kernel.max() and kernel[0, 0] == kernel.min()


def test_top_fraction_mean_of_a_known_map():
    values = torch.arange(10_000, dtype=torch.float32).reshape(1, 1, 100, 100)
    # integers exact in float32; their mean 9949.5 too: approx's default is plenty
    assert float(top_fraction_mean(values, 0.01)) == pytest.approx(sum(range(9900, 10_000)) / 100)  # 9949.5
    assert float(top_fraction_mean(values, 0.0)) == 9999.0
    assert float(top_fraction_mean(values[..., :5, :5], 0.01)) == 404.0  # 25 pixels: count 0 -> max


def test_cosine_distance_map():
    encoder = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    decoder = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).t().reshape(1, 2, 2, 1).expand(1, 2, 2, 2)
    distance = cosine_distance_map(encoder, decoder)
    assert distance.shape == (1, 1, 2, 2)
    assert torch.allclose(distance[0, 0, 0], torch.ones(2))  # orthogonal
    assert torch.allclose(distance[0, 0, 1], torch.full((2,), 1 - 1 / math.sqrt(2)))


def test_constant_map_scores_its_value():
    scorer = MapScorer(score_size=None)
    score, anomaly_map = scorer(torch.full((2, 1, 4, 4), 0.3), (56, 56))
    assert anomaly_map.shape == (2, 1, 56, 56)
    # 0.3 x (sum of 33 float32 taps, = 1 to ~33 x 6e-8): ~6e-7 at most
    assert torch.allclose(score, torch.full((2,), 0.3), atol=1e-6)  # interior of the zero-padded blur is exact


def test_pipeline_equals_the_official_evaluation_on_a_known_map():
    token_map = torch.zeros(1, 1, 28, 28)
    token_map[0, 0, 10, 12] = 1.0
    token_map[0, 0, 20:23, 3:5] = 0.5
    score, anomaly_map = MapScorer(score_size=256)(token_map, (392, 392))
    # utils.evaluation_batch with max_ratio=0.01, resize_mask=256, written out step by step:
    reference = F.interpolate(token_map, size=392, mode="bilinear", align_corners=True)
    reference = F.interpolate(reference, size=256, mode="bilinear", align_corners=False)
    reference = F.conv2d(reference, gaussian_kernel(5, 4.0)[None, None], padding=2)
    expected = torch.sort(reference.flatten(1), dim=1, descending=True)[0][:, : int(256 * 256 * 0.01)].mean(dim=1)
    # the same float32 ops in the same order on values <= 1: equal up to kernel dispatch (~1 ulp = 6e-8)
    assert torch.allclose(score, expected, atol=1e-7)
    assert anomaly_map.shape == (1, 1, 392, 392)
    # the same interpolation call on the same float32 map (values <= 1): ~1 ulp
    assert torch.allclose(anomaly_map, F.interpolate(reference, size=392, mode="bilinear"), atol=1e-7)


def test_bad_scorer_settings_are_named():
    with pytest.raises(ValueError, match="kernel_size"):
        MapScorer(kernel_size=4)
    with pytest.raises(ValueError, match="top_fraction"):
        MapScorer(top_fraction=1.5)
    with pytest.raises(ValueError, match="score_size"):
        MapScorer(score_size=2)
