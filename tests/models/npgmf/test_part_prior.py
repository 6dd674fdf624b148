"""The part normality prior: parts labelled as OpenCV labels them, measured as the probe measures them, and a
missing, extra, swapped or odd part scored above every normal tray."""

import cv2
import numpy as np
import pytest
import torch

from anomalib_npgmf.models.npgmf.components import part_prior
from anomalib_npgmf.models.npgmf.components.part_prior import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PartNormalityPrior,
    component_labels,
)

from .conftest import TRAY_BACKGROUND, TRAY_PART_COLOUR, fitted_tiny_npgmf, plain_tray


def _normalised(rgb: torch.Tensor) -> torch.Tensor:
    """What Npgmf's default pre-processor gives for RGB images in [0, 1] (at their own size)."""
    return (rgb - torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)) / torch.tensor(IMAGENET_STD).view(-1, 1, 1)


def _same_partition(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Whether two label maps split the foreground into the same components (label values aside)."""
    if not np.array_equal(ours > 0, reference > 0):
        return False
    pairs = {(int(a), int(b)) for a, b in zip(ours[ours > 0], reference[reference > 0], strict=True)}
    return len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def _serpentine(size: int = 128) -> np.ndarray:
    """One 1-px path snaking through the whole image: the longest path a part of this size can have."""
    mask = np.zeros((size, size), dtype=bool)
    mask[::4] = True
    for top in range(0, size - 4, 8):
        mask[top : top + 4, -1] = True
    for top in range(4, size - 4, 8):
        mask[top : top + 4, 0] = True
    return mask


def test_components_are_opencvs_eight_connected_components():
    rng = np.random.default_rng(0)
    masks = [_serpentine(64), _serpentine(), _serpentine(256)] + [rng.random((128, 128)) < d for d in (0.3, 0.45, 0.6)]
    for mask in masks:
        count, reference = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        ours = component_labels(torch.from_numpy(mask)[None])[0].numpy()
        assert len(np.unique(ours)) == count  # background included on both sides
        assert _same_partition(ours, reference)
    assert cv2.connectedComponents(masks[4].astype(np.uint8), connectivity=8)[0] > 50  # many parts, not one blob


def test_the_check_can_fail_too_few_rounds_split_the_serpentine():
    ours = component_labels(torch.from_numpy(_serpentine())[None], rounds=2)[0].numpy()
    assert len(np.unique(ours)) > 2


def test_parts_are_measured_as_the_probe_measures_them():
    image = np.empty((64, 64, 3))
    image[:] = TRAY_BACKGROUND
    image[5:10, 5:10] = TRAY_PART_COLOUR  # 25 px square
    image[30:32, 10:40] = TRAY_PART_COLOUR  # 60 px bar, 30 long
    image[50, 50] = TRAY_PART_COLOUR  # a 1 px speck: below min_area
    prior = PartNormalityPrior((64, 64), min_area=4)
    descriptors, valid = prior.parts(_normalised(torch.from_numpy(image).permute(2, 0, 1).float())[None])
    parts = descriptors[0][valid[0]].double().numpy()
    parts = parts[np.argsort(parts[:, 0])]
    assert parts.shape == (2, 6)
    assert np.allclose(np.exp(parts[:, 0]), [25, 60], rtol=1e-5)
    bar_ys, bar_xs = np.nonzero(image[..., 0] == TRAY_PART_COLOUR[0])
    keep = (bar_ys >= 30) & (bar_ys < 32)  # the bar's pixels only
    expected = np.sqrt(np.linalg.eigvalsh(np.cov(np.stack([bar_xs[keep], bar_ys[keep]]).astype(float)))[::-1])
    assert np.allclose(np.exp(parts[1, 1:3]), 4 * expected, rtol=1e-4)
    assert np.allclose(parts[:, 3:], TRAY_PART_COLOUR, atol=1e-5)


def _fitted(normals: torch.Tensor, kinds: int = 2) -> PartNormalityPrior:
    prior = PartNormalityPrior((64, 64), kinds=kinds, min_area=4)
    prior.fit(prior.samples(_normalised(normals)))
    return prior


def test_a_missing_extra_or_odd_part_scores_above_every_normal_tray():
    rng = np.random.default_rng(0)
    prior = _fitted(torch.stack([plain_tray(rng) for _ in range(40)]))
    normal = prior(_normalised(torch.stack([plain_tray(rng) for _ in range(12)])))
    assert normal.std() > 0  # normal trays differ, so the ranking below is not a tie
    odd = [plain_tray(rng, discs=1), plain_tray(rng, discs=3), plain_tray(rng, bars=2), plain_tray(rng, bar_length=7)]
    scores = prior(_normalised(torch.stack(odd)))
    assert scores.min() > normal.max(), (scores, normal.max())


def _trays(rng: np.random.Generator, count: int, **layout) -> torch.Tensor:
    return _normalised(torch.stack([plain_tray(rng, **layout) for _ in range(count)]))


def _shaded_trays(rng: np.random.Generator, count: int, discs: int, bars: int) -> torch.Tensor:
    """Parts shaded by ±0.2 (on a 0.4 contrast), bars 13-15 px long."""
    return torch.cat(
        [
            _trays(rng, 1, discs=discs, bars=bars, bar_length=[int(n) for n in rng.integers(13, 16, bars)], shade=0.2)
            for _ in range(count)
        ]
    )


def _swap_margin() -> tuple[torch.Tensor, torch.Tensor]:
    """Normal trays' and disc-for-bar swapped trays' (same total) scores, six kinds fitted on 40 trays."""
    rng = np.random.default_rng(4)
    prior = PartNormalityPrior((64, 64), kinds=6, min_area=4)
    prior.fit(prior.samples(_shaded_trays(rng, 40, 2, 2)))
    normal = prior(_shaded_trays(rng, 12, 2, 2))
    return normal, prior(torch.cat([_shaded_trays(rng, 3, 3, 1), _shaded_trays(rng, 3, 1, 3)]))


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # 4 distinct shapes for 6 kinds: on purpose
def test_kinds_are_shapes_so_a_swapped_kind_stands_clear_of_shaded_normals(monkeypatch: pytest.MonkeyPatch):
    """More kinds than shapes, parts shaded: clustered by shape, the discs (all one shape) are one kind counted 2 on
    every normal tray, and a swap scores over twice the highest normal tray. Clustered on colour too, shapes split by
    shade, the counts per kind vary from tray to tray and the swap hides among them (the check fails)."""
    normal, swapped = _swap_margin()
    assert normal.std() > 0
    assert swapped.min() > 2 * normal.max(), (swapped, normal.max())
    monkeypatch.setattr(part_prior, "SHAPE_FEATURES", part_prior.PART_FEATURES)
    normal, swapped = _swap_margin()
    assert swapped.min() <= 2 * normal.max(), (swapped, normal.max())


def _two_bar_trays(rng: np.random.Generator, count: int, long_bar: tuple[int, int]) -> torch.Tensor:
    """A disc, a short bar (6-7 px) and a bar of a length drawn from ``long_bar`` (end excluded)."""
    return torch.cat(
        [
            _trays(rng, 1, discs=1, bars=2, bar_length=(int(rng.integers(6, 8)), int(rng.integers(*long_bar))))
            for _ in range(count)
        ]
    )


def _odd_length_scores(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    normals = _two_bar_trays(rng, 40, (16, 19))
    prior = PartNormalityPrior((64, 64), kinds=3, min_area=4)
    prior.fit(prior.samples(normals))
    return prior(_two_bar_trays(rng, 12, (16, 19))), prior(_two_bar_trays(rng, 6, (11, 13)))


def test_a_bar_between_the_two_bar_lengths_is_far_in_its_kinds_spread(monkeypatch: pytest.MonkeyPatch):
    """The odd bar (11-12 px) is close to both bar kinds in the spread of all parts, but many of its nearest kind's
    own spreads away; with one spread for every kind (a floor as large as all parts' spread) it hides."""
    normal, odd = _odd_length_scores(np.random.default_rng(5))
    assert normal.std() > 0
    assert odd.min() > normal.max(), (odd, normal.max())
    monkeypatch.setattr(part_prior, "SPREAD_FLOOR", 1.0)
    normal, odd = _odd_length_scores(np.random.default_rng(5))
    assert odd.min() <= normal.max()  # the check above can fail


def test_unfitted_prior_scores_zero_and_bad_settings_or_partless_images_are_refused():
    prior = PartNormalityPrior((64, 64))
    assert torch.equal(prior(_normalised(plain_tray(np.random.default_rng(2))[None])), torch.zeros(1))
    with pytest.raises(ValueError, match="part_kinds >= 1"):
        PartNormalityPrior((64, 64), kinds=0)
    with pytest.raises(ValueError, match="part_contrast"):
        PartNormalityPrior((64, 64), contrast=1.5)
    plain = torch.empty(4, 3, 64, 64)
    plain[:] = torch.tensor(TRAY_BACKGROUND).view(-1, 1, 1)
    with pytest.raises(ValueError, match=r"0 part\(s\)"):
        prior.fit(prior.samples(_normalised(plain)))


def test_npgmf_adds_the_part_distance_to_the_image_score_only():
    """The same model with and without the part prior: scores differ by exactly the part's share of its normalised
    distance, maps not at all (it is an image-level part)."""
    rng = np.random.default_rng(3)
    trays = torch.nn.functional.interpolate(torch.stack([plain_tray(rng) for _ in range(6)]), size=64)
    without, with_part = fitted_tiny_npgmf(), fitted_tiny_npgmf(use_part_prior=True, part_weight=2.0, part_kinds=2)
    with torch.no_grad():
        base, scored = without.model(without.pre_processor(trays)), with_part.model(with_part.pre_processor(trays))
        distance = with_part.model.part_prior(with_part.pre_processor(trays))
    assert distance.std() > 0
    share = with_part.model.fusion_weights["part"]
    expected = base.pred_score + share * with_part.model.part_norm(distance)
    assert share == pytest.approx(2.0 / 4.0)
    assert torch.allclose(scored.pred_score, expected, atol=1e-5)
    assert torch.allclose(scored.anomaly_map, base.anomaly_map)


def test_a_part_prior_fitted_before_kinds_had_their_own_spread_is_refused_by_name():
    prior = PartNormalityPrior((64, 64))
    state = {key: value for key, value in prior.state_dict().items() if key != "spread"}
    with pytest.raises(ValueError, match="before 2026-12-07"):
        PartNormalityPrior((64, 64)).load_state_dict(state)
    PartNormalityPrior((64, 64)).load_state_dict(prior.state_dict())  # today's loads


def test_a_part_floor_drops_what_lies_below_it_and_keeps_what_lies_above():
    """``part_floor`` 0: an image whose normalised part distance is below 0 (under its normal images' 0.9 quantile)
    scores as the model without the part prior; one above it as the model without the floor."""
    rng = np.random.default_rng(3)
    trays = torch.nn.functional.interpolate(torch.stack([plain_tray(rng) for _ in range(6)]), size=64)
    settings = {"use_part_prior": True, "part_weight": 2.0, "part_kinds": 2}
    without, unfloored = fitted_tiny_npgmf(), fitted_tiny_npgmf(**settings)
    floored = fitted_tiny_npgmf(**settings, part_floor=0.0)
    with torch.no_grad():
        distance = floored.model.part_prior(floored.pre_processor(trays))
        for model in (unfloored, floored):  # the floor mid-way through these trays' distances, so both sides occur
            model.model.part_norm.q_low.fill_(float(distance.median()))
            model.model.part_norm.q_high.fill_(float(distance.median() + distance.std()))
        below = floored.model.part_norm(distance) < 0
        scores = [model.model(model.pre_processor(trays)).pred_score for model in (without, unfloored, floored)]
    assert distance.std() > 0 and 0 < int(below.sum()) < len(trays)
    base, plain, floor = scores
    assert torch.allclose(floor[below], base[below], atol=1e-6)
    assert torch.allclose(floor[~below], plain[~below], atol=1e-6)
    assert not torch.allclose(plain[below], base[below], atol=1e-6)  # without the floor those images move


def test_a_part_floor_that_is_not_a_finite_number_is_refused():
    with pytest.raises(ValueError, match=r"part_floor must be a finite number .* got nan"):
        fitted_tiny_npgmf(use_part_prior=True, part_floor=float("nan"))


def _mapped(normals: torch.Tensor) -> PartNormalityPrior:
    """Two kinds and their territories fitted on ``normals`` (RGB in [0, 1])."""
    prior = PartNormalityPrior((64, 64), kinds=2, min_area=4, in_map=True)
    prior.fit(prior.samples(_normalised(normals)))
    prior.fit_territory(prior.kind_maps(_normalised(normals)))
    return prior


def test_the_part_map_lights_an_odd_part_on_itself_and_a_missing_part_over_where_parts_lie():
    """Normal trays paint nothing above the normals' largest value; a short bar lights itself (the map's maximum is
    on it), a third disc lights discs, and a missing disc lights a region many times a part's area (its territory)."""
    rng = np.random.default_rng(4)
    prior = _mapped(torch.stack([plain_tray(rng) for _ in range(40)]))
    normal = prior.part_map(_trays(rng, 12))
    assert normal.std() > 0 and normal.amax() > 0  # normal parts are painted, and not all alike
    ceiling = float(normal.amax())
    odd = _trays(rng, 1, bar_length=7)
    labels, descriptors, valid = prior.labelled_parts(odd)
    painted = prior.part_map(odd)[0, 0]
    smallest = torch.where(valid[0], descriptors[0, :, 0], torch.inf).argmin()  # the 2x7 bar, below 5x5 discs
    assert painted.amax() > ceiling
    assert labels[0].flatten()[painted.flatten().argmax()] == smallest
    extra = prior.part_map(_trays(rng, 1, discs=3))[0, 0]
    assert extra.amax() > ceiling
    missing = prior.part_map(_trays(rng, 1, discs=1))[0, 0]
    lit = int((missing > ceiling).sum())
    assert lit > 10 * 25, lit  # a region, not one disc's 25 px


def test_npgmf_paints_the_part_map_into_the_map_only_and_refuses_what_cannot_hold_it():
    """With ``part_in_map`` the image score is the model's without it, bit for bit; the map changes."""
    rng = np.random.default_rng(3)
    trays = torch.nn.functional.interpolate(torch.stack([plain_tray(rng) for _ in range(6)]), size=64)
    settings = {"use_part_prior": True, "part_weight": 2.0, "part_kinds": 2}
    without, painted = fitted_tiny_npgmf(**settings), fitted_tiny_npgmf(**settings, part_in_map=True)
    assert bool(painted.model.part_prior.territory_fitted) and bool(painted.model.part_map_norm.fitted)
    with torch.no_grad():
        base, scored = without.model(without.pre_processor(trays)), painted.model(painted.pre_processor(trays))
    assert torch.equal(scored.pred_score, base.pred_score)
    assert not torch.allclose(scored.anomaly_map, base.anomaly_map, atol=1e-4)
    with pytest.raises(ValueError, match=r"part_in_map .* needs use_part_prior"):
        fitted_tiny_npgmf(part_in_map=True)
    with pytest.raises(ValueError, match="without part_in_map"):
        painted.load_state_dict(without.state_dict())


def test_the_part_map_floor_takes_only_what_lies_above_it_from_the_map_and_nothing_from_the_score():
    """``part_map_floor`` f: the part map adds ``w * (n - f)`` where its normalised value n exceeds f and nothing
    elsewhere (at f = 0, ``w * max(n, 0)`` as before), the fused map moves, the image score does not, and a floor that
    is not a finite value >= 0 is refused by name."""
    rng = np.random.default_rng(3)
    trays = torch.nn.functional.interpolate(torch.stack([plain_tray(rng, shade=0.1) for _ in range(6)]), size=64)
    settings = {"use_part_prior": True, "part_weight": 2.0, "part_kinds": 2, "part_in_map": True}
    floor = 0.05
    at_zero, raised = fitted_tiny_npgmf(**settings), fitted_tiny_npgmf(**settings, part_map_floor=floor)
    with torch.no_grad():
        images = at_zero.pre_processor(trays)
        base, floored = at_zero.model(images), raised.model(images)
        raw = {"part_map": at_zero.model.unsmoothed_maps(images)["part_map"]}
        normalised = at_zero.model.normalizer("part_map")(raw["part_map"])
        fused = {floor: model.model.fuse(raw) for floor, model in ((0.0, at_zero), (floor, raised))}
    assert float((normalised > floor).float().mean()) > 0 and float((normalised < floor).float().mean()) > 0
    weight = at_zero.model.fusion_weights["part_map"]
    torch.testing.assert_close(fused[0.0], weight * normalised.clamp_min(0.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(fused[floor], weight * (normalised - floor).clamp_min(0.0), rtol=0, atol=1e-6)
    # the forward map moves by more than float32 rounding of maps this large (the tiny model's noise normals put
    # them in the thousands), the image score not at all
    rounding = 4 * torch.finfo(torch.float32).eps * float(base.anomaly_map.abs().amax())
    assert float((base.anomaly_map - floored.anomaly_map).amax()) > 4 * rounding
    assert torch.equal(floored.pred_score, base.pred_score)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="part_map_floor must be a finite value >= 0"):
            fitted_tiny_npgmf(**settings, part_map_floor=bad)


def test_fitting_the_territory_leaves_the_training_shuffles_alone():
    """The territory pass iterates the shuffled training loader after the first epoch; torch's random state must come
    out of it unchanged, or ``part_in_map`` would change which images the later epochs batch together."""
    from anomalib.data import ImageBatch
    from torch.utils.data import DataLoader

    from .conftest import tiny_normal_batch

    model = fitted_tiny_npgmf(use_part_prior=True, part_kinds=2, part_in_map=True)
    normals = tiny_normal_batch()

    def collate(indices: list[int]) -> ImageBatch:
        return ImageBatch(
            image=normals.image[indices],
            gt_label=normals.gt_label[indices],
            image_path=[normals.image_path[i] for i in indices],
        )

    loader = DataLoader(range(8), batch_size=4, shuffle=True, collate_fn=collate)
    state = torch.get_rng_state()
    list(loader)
    assert not torch.equal(torch.get_rng_state(), state), "a shuffled pass no longer draws from torch: nothing to test"
    state = torch.get_rng_state()
    model.model.part_prior.territory_fitted.fill_(False)
    model.fit_part_territory(loader)
    assert bool(model.model.part_prior.territory_fitted)
    assert torch.equal(torch.get_rng_state(), state)


def _kind_scaled(normals: torch.Tensor) -> PartNormalityPrior:
    """As :func:`_mapped`, with each kind's training distances fitted too (``kind_scaled``)."""
    prior = PartNormalityPrior((64, 64), kinds=2, min_area=4, in_map=True, kind_scaled=True)
    samples = prior.samples(_normalised(normals))
    prior.fit(samples)
    prior.fit_territory(prior.kind_maps(_normalised(normals)))
    prior.fit_kind_distances(samples)
    return prior


def test_kind_scaling_paints_a_part_by_how_far_it_lies_beyond_its_kinds_usual_distance():
    """``kind_scaled``: each kind keeps its training parts' distance mean and spread (checked against the distances
    themselves), a normal part paints its distance above that mean in that spread, so the normal trays paint about
    nothing while an odd bar stands further above them than it does unscaled (the point: issue 18, pins at 256 px)."""
    rng = np.random.default_rng(4)
    normals = torch.stack([plain_tray(rng, shade=0.1) for _ in range(40)])
    scaled, plain = _kind_scaled(normals), _mapped(normals)
    descriptors, valid, _ = scaled.largest_parts(_normalised(normals))
    member, distance = scaled.kinds_of(descriptors, valid, torch.zeros(40, dtype=torch.long))
    for kind in range(2):
        own = distance[member[..., kind] > 0].double()
        assert own.numel() >= 2 and own.std() > 0  # a spread to scale by, so the check below can fail
        assert float(scaled.distance_mean[0, kind]) == pytest.approx(float(own.mean()), rel=1e-5)
        assert float(scaled.distance_spread[0, kind]) == pytest.approx(float(own.std(unbiased=False)), rel=1e-5)
    tests, odd = _trays(rng, 12, shade=0.1), _trays(rng, 1, bar_length=7, shade=0.1)
    margins = {}
    for name, prior in (("scaled", scaled), ("plain", plain)):
        normal = prior.part_map(tests)
        assert normal.amax() > 0  # some normal part lies beyond its kind's mean, so the margin is not over zero
        margins[name] = float(prior.part_map(odd).amax() / normal.amax())
    assert margins["scaled"] > 1 and margins["scaled"] > 1.5 * margins["plain"], margins
    # parts at or below their kind's mean distance paint nothing; unscaled, every part paints its distance
    for prior, least, most in ((scaled, 0.3, 1.0), (plain, 0.0, 0.01)):
        on_parts = prior.part_map(tests)[:, 0][prior.kind_maps(tests) >= 0]
        assert least <= float((on_parts == 0).float().mean()) <= most


def test_npgmf_fits_the_kind_scale_with_the_territory_and_refuses_what_cannot_hold_it():
    settings = {"use_part_prior": True, "part_kinds": 2, "part_in_map": True}
    scaled, plain = fitted_tiny_npgmf(**settings, part_map_kind_scaled=True), fitted_tiny_npgmf(**settings)
    prior = scaled.model.part_prior
    assert not torch.equal(prior.distance_mean, torch.zeros_like(prior.distance_mean))  # fitted, not the defaults
    with pytest.raises(ValueError, match=r"part_map_kind_scaled .* needs part_in_map"):
        fitted_tiny_npgmf(use_part_prior=True, part_map_kind_scaled=True)
    with pytest.raises(ValueError, match="without part_map_kind_scaled"):
        scaled.load_state_dict(plain.state_dict())
