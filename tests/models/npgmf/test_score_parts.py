"""``score_parts`` (issue 18): the image score may read fewer parts than the anomaly map fuses; the map is unchanged."""

import pytest
import torch

from anomalib_npgmf import Npgmf

from .conftest import IMAGE_SIZE, TINY_NPGMF, fitted_tiny_npgmf


def test_the_map_is_the_same_and_the_score_reads_only_the_named_parts():
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    every, priors = fitted_tiny_npgmf(), fitted_tiny_npgmf(score_parts=["global", "patch"])
    with torch.no_grad():
        default_output, priors_output = every.model(images), priors.model(images)
        raw = priors.model.unsmoothed_maps(images)
        patch_only = priors.model.blur(priors.model.fuse({"patch": raw["patch"]})).amax(dim=(-3, -2, -1))
        expected = patch_only + priors.model.fuse({"global": raw["global"][:, 0, 0, 0]})
    assert torch.equal(default_output.anomaly_map, priors_output.anomaly_map)
    assert priors_output.pred_score.std() > 0  # a spread, so the comparisons below can fail
    assert not torch.allclose(default_output.pred_score, priors_output.pred_score)
    torch.testing.assert_close(priors_output.pred_score, expected, rtol=0, atol=1e-6)  # float32 op order


def test_the_default_reads_every_active_part():
    assert fitted_tiny_npgmf().model.score_parts == ("logical", "structural", "global", "patch")
    assert Npgmf(**{**TINY_NPGMF, "variant": "paper"}).model.score_parts == ("logical", "structural")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"score_parts": ["glob"]}, "score_parts must be a non-empty list"),
        ({"score_parts": []}, "score_parts must be a non-empty list"),
        ({"variant": "paper", "score_parts": ["global"]}, r"\['global'\] that this model has switched off"),
    ],
)
def test_a_wrong_score_parts_is_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        Npgmf(**{**TINY_NPGMF, **overrides})
