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
    assert np.allclose(actual, expected, rtol=1e-6, atol=1e-8)


def test_distance_is_mahalanobis_under_the_shrunk_covariance():
    rng = np.random.default_rng(1)
    samples = torch.from_numpy(rng.normal(size=(40, 5))).float()
    prior = GlobalNormalityPrior(5)
    prior.fit(samples)
    lw = LedoitWolf().fit(samples.double().numpy())
    query = torch.from_numpy(rng.normal(size=(3, 5))).float()
    levels = [query[:, :, None, None].expand(-1, -1, 2, 2)]  # pooled descriptor of a constant map = the vector
    expected = np.sqrt(lw.mahalanobis(query.double().numpy()))
    assert prior(levels).numpy() == pytest.approx(expected, rel=1e-4)


def test_fit_needs_two_finite_samples_of_the_right_width():
    prior = GlobalNormalityPrior(4)
    with pytest.raises(ValueError, match="at least 2 normal images"):
        prior.fit(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="at least 2 normal images"):
        prior.fit(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="NaN/Inf"):
        prior.fit(torch.full((5, 4), float("nan")))
