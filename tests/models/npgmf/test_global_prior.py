import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from anomalib_npgmf.models.npgmf.components import GlobalNormalityPrior
from anomalib_npgmf.models.npgmf.components.global_prior import ledoit_wolf_covariance


def test_ledoit_wolf_matches_scikit_learn():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(20, 30)) @ rng.normal(size=(30, 30))
    expected = LedoitWolf().fit(samples).covariance_
    actual = ledoit_wolf_covariance(torch.from_numpy(samples)).numpy()
    # both estimators in float64: they differ by summation order (~1e-14 relative); rtol 1e-6 is generous
    assert np.allclose(actual, expected, rtol=1e-6, atol=1e-8)


def test_distance_is_mahalanobis_under_the_shrunk_covariance():
    rng = np.random.default_rng(1)
    samples = torch.from_numpy(rng.normal(size=(40, 5))).float()
    prior = GlobalNormalityPrior([5], grid=1)
    prior.fit(samples)
    lw = LedoitWolf().fit(samples.double().numpy())
    query = torch.from_numpy(rng.normal(size=(3, 5))).float()
    levels = [query[:, :, None, None].expand(-1, -1, 2, 2)]  # pooled descriptor of a constant map = the vector
    expected = np.sqrt(lw.mahalanobis(query.double().numpy()))
    # the prior's distances are float32 by design, sklearn's float64: ~1e-7 x the covariance's condition (<1e3)
    assert prior(levels).numpy() == pytest.approx(expected, rel=1e-4)


def test_fit_needs_two_finite_samples_of_the_right_width():
    prior = GlobalNormalityPrior([4], grid=1)
    with pytest.raises(ValueError, match="at least 2 normal images"):
        prior.fit(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\(N, 4\) descriptors"):
        prior.fit(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="NaN/Inf"):
        prior.fit(torch.full((5, 4), float("nan")))


def test_batched_ledoit_wolf_equals_one_call_per_batch_entry():
    samples = torch.randn(3, 7, 5, dtype=torch.float64)
    batched = ledoit_wolf_covariance(samples)
    for index in range(3):
        # the same float64 estimator batched or alone: rounding-order differences only
        assert torch.allclose(batched[index], ledoit_wolf_covariance(samples[index]))


def test_several_categories_get_their_own_gaussian_and_images_route_to_the_nearest():
    generator = torch.Generator().manual_seed(2)
    first = torch.randn(30, 4, generator=generator)
    second = torch.randn(30, 4, generator=generator) + torch.tensor([6.0, 0.0, 0.0, 0.0])
    prior = GlobalNormalityPrior([4], num_categories=2, grid=1)
    index = torch.tensor([0] * 30 + [1] * 30)
    prior.fit(torch.cat([first, second]), index)
    alone = GlobalNormalityPrior([4], grid=1)
    alone.fit(second)
    # the same fit per category or alone: reduction-order differences only, far inside allclose's default
    assert torch.allclose(prior.mean[1], alone.mean[0]) and torch.allclose(prior.precision[1], alone.precision[0])
    queries = torch.stack([first[:3].mean(0), second[:3].mean(0)])
    levels = [queries[:, :, None, None]]
    distances = prior.distances(levels)
    assert distances.shape == (2, 2)
    assert GlobalNormalityPrior.route(distances).tolist() == [0, 1]
    # the same distances taken per category: identical float32 ops
    assert torch.allclose(prior(levels), distances.amin(dim=1))
    with pytest.raises(ValueError, match="needs each sample's category index"):
        prior.fit(torch.cat([first, second]))
    with pytest.raises(ValueError, match="category #1 has 1"):
        prior.fit(torch.cat([first, second[:1]]), torch.tensor([0] * 30 + [1]))


def test_grid_descriptor_is_the_mean_of_each_cell_and_wide_ones_are_subsampled():
    from anomalib_npgmf.models.npgmf.components import pooled_descriptor

    level = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    descriptor = pooled_descriptor([level], grid=2)
    assert descriptor.shape == (2, 3 * 4)
    # cells of a 5x4 map on a 2x2 grid: rows 0-2 / 2-4 (adaptive pooling overlaps the middle row), columns 0-1 / 2-3
    expected = [level[:, :, 0:3, 0:2], level[:, :, 0:3, 2:4], level[:, :, 2:5, 0:2], level[:, :, 2:5, 2:4]]
    # cell means in another reduction order (float32): allclose's rtol 1e-5 is ~100 ulps
    assert torch.allclose(descriptor, torch.cat([cell.mean(dim=(-2, -1)) for cell in expected], dim=1))
    adaptive = torch.nn.functional.adaptive_avg_pool2d(level, 2).permute(0, 2, 3, 1).flatten(1)
    assert torch.allclose(descriptor, adaptive)
    wide = GlobalNormalityPrior([300, 300], grid=2, max_dim=1000)
    assert wide.mean.shape == (1, 1000)
    assert torch.equal(wide.feature_index, GlobalNormalityPrior([300, 300], grid=2, max_dim=1000).feature_index)
    levels = [torch.randn(3, 300, 4, 4), torch.randn(3, 300, 2, 2)]
    assert torch.equal(wide.descriptor(levels), pooled_descriptor(levels, 2)[:, wide.feature_index])


def test_precision_is_the_inverse_and_degenerate_covariances_fall_back_to_the_pseudo_inverse():
    from anomalib_npgmf.models.npgmf.components.global_prior import precision_from_covariance

    generator = torch.Generator().manual_seed(0)
    covariance = ledoit_wolf_covariance(torch.randn(3, 20, 16, generator=generator))  # batched, positive definite
    precision = precision_from_covariance(covariance)
    identity = torch.eye(16, dtype=torch.float64).expand(3, 16, 16)
    # float64 inverse of a Ledoit-Wolf covariance (condition < 1e2): residual ~ n x condition x 1e-16 = 1e-13
    assert torch.allclose(precision @ covariance, identity, atol=1e-10)
    singular = torch.diag(torch.tensor([2.0, 0.0], dtype=torch.float64))  # constant second feature
    expected = torch.diag(torch.tensor([0.5, 0.0], dtype=torch.float64))
    assert torch.allclose(precision_from_covariance(singular), expected)


def test_distances_stay_float32_under_bf16_autocast():
    """bf16-mixed training must not run the Mahalanobis matmul in bf16 (precision entries are large)."""
    from anomalib_npgmf.models.npgmf.components.global_prior import mahalanobis_squared

    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(40, 32, generator=generator) * torch.linspace(0.01, 3.0, 32)  # badly scaled: big precision
    precision = torch.linalg.inv(ledoit_wolf_covariance(samples)).float()
    centred = torch.randn(8, 32, generator=generator)
    exact = mahalanobis_squared(centred, precision)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = mahalanobis_squared(centred, precision)
        in_bf16 = ((centred.unsqueeze(-2) @ precision).squeeze(-2) * centred).sum(dim=-1)  # what autocast would do
    assert mixed.dtype == torch.float32 and torch.equal(mixed, exact)
    # bf16 keeps 8 mantissa bits (0.4 % per rounding): at this scale it is off by far more than 1e-4
    assert not torch.allclose(in_bf16.float(), exact, rtol=1e-4)  # the hazard is real at this scale


def test_a_whole_image_global_prior_does_not_see_where_a_part_lies():
    """``global_prior_grid=1`` (issue 18): moving a part changes the 2x2-cell descriptor but not the whole-image one."""
    from anomalib_npgmf import Npgmf

    plus = {"variant": "plus", "backbone": "resnet18", "pre_trained": False, "image_size": 64, "prior_channels": 0}
    assert Npgmf(**plus).model.global_prior.grid == 2  # the default keeps where parts are
    prior = Npgmf(**plus, global_prior_grid=1).model.global_prior
    assert prior.grid == 1
    levels = [torch.zeros(1, 4, 8, 8)]
    moved = [torch.zeros(1, 4, 8, 8)]
    levels[0][..., 1:3, 1:3] = 1.0  # a part in the top-left cell
    moved[0][..., 5:7, 5:7] = 1.0  # the same part in the bottom-right cell
    whole = GlobalNormalityPrior([4], grid=1)
    cells = GlobalNormalityPrior([4], grid=2)
    assert torch.equal(whole.descriptor(levels), whole.descriptor(moved))
    assert not torch.equal(cells.descriptor(levels), cells.descriptor(moved))
    with pytest.raises(ValueError, match="grid >= 1"):
        Npgmf(**plus, global_prior_grid=0)
