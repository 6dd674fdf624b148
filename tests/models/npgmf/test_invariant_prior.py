"""The invariant normality prior (issue 18): view-averaged moments, blind to flips and quarter-turns, score-only."""

import pytest
import torch
from anomalib.data import ImageBatch

from anomalib_npgmf import Npgmf
from anomalib_npgmf.models.npgmf.components import InvariantNormalityPrior, symmetric_views, view_count
from anomalib_npgmf.models.npgmf.components.invariant_prior import moment_descriptor

from .conftest import IMAGE_SIZE, TINY_NPGMF, fitted_tiny_npgmf


def test_views_are_the_eight_symmetries_of_a_square_and_four_of_a_rectangle():
    square = torch.arange(9.0).reshape(1, 1, 3, 3)
    views = symmetric_views(square)
    assert views.shape[0] == view_count((3, 3)) == 8
    assert len({tuple(view.flatten().tolist()) for view in views}) == 8  # all distinct
    assert any(torch.equal(view, square[0].rot90(1, (-2, -1))) for view in views)
    rectangle = torch.arange(6.0).reshape(1, 1, 2, 3)
    assert symmetric_views(rectangle).shape == (4, 1, 2, 3) and view_count((2, 3)) == 4


@pytest.mark.parametrize("turn", [lambda x: x.rot90(1, (-2, -1)), lambda x: x.flip(-1), lambda x: x.transpose(-2, -1)])
def test_the_descriptor_does_not_see_a_quarter_turn_or_a_mirror_image(turn):
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 3))
    prior = InvariantNormalityPrior([5], views=8)
    images = torch.rand(2, 3, 12, 12)
    plain = prior.descriptor([encoder(symmetric_views(images))])
    turned = prior.descriptor([encoder(symmetric_views(turn(images)))])
    single_view = moment_descriptor([encoder(images)])
    assert (single_view - moment_descriptor([encoder(turn(images))])).abs().max() > 1e-3  # the encoder is not invariant
    # the same eight views in another order: float32 summation order only (|values| ~ 1, 8 terms)
    torch.testing.assert_close(plain, turned, rtol=1e-5, atol=1e-6)


def test_it_adds_its_normalised_distance_to_the_image_score_and_leaves_the_map_alone():
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    without = fitted_tiny_npgmf(use_invariant_prior=False)
    with_it = fitted_tiny_npgmf(use_invariant_prior=True, invariant_weight=2.0)
    assert bool(with_it.model.invariant_prior.fitted) and bool(with_it.model.invariant_norm.fitted)
    with torch.no_grad():
        plain, added = without.model(images), with_it.model(images)
        distance = with_it.model.unsmoothed_maps(images)["invariant"][:, 0, 0, 0]
        term = with_it.model.fuse({"invariant": distance})
    assert distance.std() > 0  # a spread, so the equalities below can fail
    torch.testing.assert_close(added.anomaly_map, plain.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(added.pred_score, plain.pred_score + term, rtol=0, atol=1e-6)  # float32 op order
    assert with_it.model.fusion_weights["invariant"] == pytest.approx(2.0 / 4.0)  # on the four parts' scale


def test_scored_alone_it_ranks_images_by_its_distance():
    images = torch.rand((4, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(3))
    model = fitted_tiny_npgmf(use_invariant_prior=True, score_parts=["invariant"])
    with torch.no_grad():
        scores = model.model(images).pred_score
        distance = model.model.unsmoothed_maps(images)["invariant"][:, 0, 0, 0]
    assert distance.std() > 0
    assert torch.equal(scores.argsort(), distance.argsort())


def test_off_by_default_and_then_absent_from_the_state_dict():
    assert Npgmf(**{**TINY_NPGMF, "use_invariant_prior": True}).model.invariant_prior is not None
    for variant in ("paper", "plus"):
        model = Npgmf(**{**TINY_NPGMF, "variant": variant}).model
        assert model.invariant_prior is None
        assert not [key for key in model.state_dict() if "invariant" in key]  # older checkpoints load unchanged


def test_its_views_are_encoded_at_the_scale_asked_for(monkeypatch):
    model = Npgmf(**TINY_NPGMF, use_invariant_prior=True, invariant_scale=0.5).model
    seen = []
    monkeypatch.setattr(model.encoder, "forward", lambda images: seen.append(images.shape) or [images] * 4)
    model._view_levels(torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert seen == [(16, 3, IMAGE_SIZE // 2, IMAGE_SIZE // 2)]  # 8 views of 2 images, half the side


def test_a_negative_weight_or_a_scale_out_of_range_is_named():
    with pytest.raises(ValueError, match="invariant_weight must be >= 0"):
        Npgmf(**TINY_NPGMF, use_invariant_prior=True, invariant_weight=-1.0)
    with pytest.raises(ValueError, match=r"invariant_scale must be in \(0, 1\], got 2"):
        Npgmf(**TINY_NPGMF, use_invariant_prior=True, invariant_scale=2)


def test_the_prior_parts_normalisation_is_fitted_once_and_the_students_each_time(monkeypatch):
    """The prior parts read only the frozen encoder and fitted priors, so a refit (every validation epoch) skips them:
    their quantiles stay, and the invariant prior's eight views are not encoded again."""
    model = fitted_tiny_npgmf(use_invariant_prior=True)
    net = model.model
    kept = {part: net.normalizer(part).state_dict() for part in ("global", "patch", "invariant")}
    before = net.logical_norm.q_high.clone()
    calls = []
    monkeypatch.setattr(net, "_view_levels", lambda images: calls.append(images) or [])
    with torch.no_grad():  # the students move: their maps, and so their quantiles, must be refitted
        for parameter in net.logical.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    images = torch.rand((4, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(4))
    paths = [f"/data/demo_box/validation/good/{i}.png" for i in range(4)]
    model.fit_normalization([[ImageBatch(image=images, gt_label=torch.zeros(4, dtype=torch.long), image_path=paths)]])
    assert not calls
    assert not torch.equal(net.logical_norm.q_high, before)
    for part, state in kept.items():
        for name, value in net.normalizer(part).state_dict().items():
            assert torch.equal(value, state[name]), (part, name)
