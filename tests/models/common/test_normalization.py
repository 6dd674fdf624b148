import numpy as np
import pytest
import torch

from anomalib_npgmf.models.common import QuantileMapNormalizer


def test_fit_uses_pooled_quantiles_and_maps_them_to_0_and_0_1():
    values = torch.arange(1000, dtype=torch.float32).reshape(10, 1, 10, 10)
    normalizer = QuantileMapNormalizer(0.9, 0.995)
    normalizer.fit(list(values))
    expected_low, expected_high = np.quantile(np.arange(1000.0), [0.9, 0.995])
    # quantiles of small integers, exact in float32 and float64: approx's default is plenty
    assert float(normalizer.q_low) == pytest.approx(expected_low)
    assert float(normalizer.q_high) == pytest.approx(expected_high)
    out = normalizer(torch.tensor([expected_low, expected_high]))
    # float32 (x - q_low) / (q_high - q_low) x 0.1 with x ~ 1e3: one ulp of x (6e-5) / range (~95) x 0.1 = 6e-8
    assert out.tolist() == pytest.approx([0.0, 0.1], abs=1e-5)
    assert bool(normalizer.fitted)


def test_constant_maps_keep_a_finite_scale():
    normalizer = QuantileMapNormalizer()
    normalizer.fit([torch.full((4, 4), 2.0)])
    assert torch.isfinite(normalizer(torch.tensor([2.0, 3.0]))).all()


def test_nan_maps_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="NaN/Inf"):
        QuantileMapNormalizer().fit([torch.tensor([1.0, float("nan")])])


def test_bad_quantiles_are_refused():
    with pytest.raises(ValueError, match="low_quantile"):
        QuantileMapNormalizer(0.9, 0.5)


def test_a_spread_below_float_noise_is_floored_relative_to_the_magnitude():
    from anomalib_npgmf.models.common.normalization import SPREAD_FLOOR

    # normal values 82.0633 +- 1e-5 (a global prior fitted on few images): the spread is ~1 float32 ulp
    values = torch.full((1000,), 82.0633) + torch.linspace(-1e-5, 1e-5, 1000)
    normalizer = QuantileMapNormalizer()
    normalizer.fit([values])
    assert float(normalizer.q_high - normalizer.q_low) == pytest.approx(SPREAD_FLOOR * 82.0633, rel=1e-3)
    # a 1e-6 relative difference (torch vs OpenVINO float32) moves the normalised value by 0.1 * 1e-6 / SPREAD_FLOOR;
    # the 1e-6 shift of 82.07 is ~10 float32 ulps, so it is represented to within 10 %: bound 1.1x
    shifted = normalizer(torch.tensor([82.07 * (1 + 1e-6)])) - normalizer(torch.tensor([82.07]))
    assert abs(float(shifted)) <= 1.1 * 0.1 * 1e-6 / SPREAD_FLOOR
    # a real spread is left alone: the quantiles of 80..90 themselves
    wide = QuantileMapNormalizer()
    wide.fit([torch.linspace(80.0, 90.0, 1000)])
    low, high = np.quantile(np.linspace(80.0, 90.0, 1000), [0.9, 0.995])
    assert float(wide.q_high - wide.q_low) == pytest.approx(high - low, rel=1e-5)
