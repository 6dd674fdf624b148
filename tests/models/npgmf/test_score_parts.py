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


PART_MAP = {"use_part_prior": True, "part_kinds": 2, "part_in_map": True, "choose_part_weight": True}


@pytest.mark.parametrize("part_map", [{}, PART_MAP])
def test_score_fusion_weights_keep_the_image_score_while_the_map_weighs_its_parts_apart(part_map):
    """``score_fusion_weights`` (issue 18): a model whose map weighs the patch map up scores images exactly as the
    model built with the score's weights for both, chosen weights included; its map is another."""
    images = torch.rand((4, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    split = {"fusion_weights": (1.0, 1.0, 1.0, 4.0), "score_fusion_weights": (1.0, 1.0, 1.0, 1.0)}
    if part_map:
        split["part_map_weight"] = 16.0
    one, apart = fitted_tiny_npgmf(**part_map), fitted_tiny_npgmf(**part_map, **split)
    with torch.no_grad():
        same, other = one.model(images), apart.model(images)
    assert same.pred_score.std() > 0  # a spread, so the comparison can fail
    assert torch.equal(other.pred_score, same.pred_score)
    assert not torch.allclose(other.anomaly_map, same.anomaly_map, atol=1e-4)
    if part_map:  # a weight chosen at fit time reaches the score's shares as the map's
        chosen_at_fit = one.model.current_part_weight
        assert apart.model.current_part_weight == chosen_at_fit  # the choice reads the score's shares: the same
        for model in (one, apart):
            model.model.set_chosen_weight("part", 64.0 if chosen_at_fit != 64.0 else 0.5)
        with torch.no_grad():
            chosen, chosen_apart = one.model(images), apart.model(images)
        assert not torch.allclose(chosen.pred_score, same.pred_score)
        assert torch.equal(chosen_apart.pred_score, chosen.pred_score)


def test_bad_score_fusion_weights_are_named():
    with pytest.raises(ValueError, match=r"score_fusion_weights must be three or four non-negative numbers"):
        Npgmf(**TINY_NPGMF, score_fusion_weights=(1.0, -1.0, 1.0, 1.0))
