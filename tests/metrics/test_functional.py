"""AU-sPRO against hand-computed values and an independent brute-force implementation."""

import numpy as np
import pytest
import torch

from anomalib_npgmf.metrics import au_spro, spro_curve
from anomalib_npgmf.metrics.functional import integrate_to_limit


def _mask(shape, *cells):
    mask = np.zeros(shape, bool)
    for r, c in cells:
        mask[r, c] = True
    return mask


def brute_force_au_spro(maps, regions, fpr_limit):
    """Independent reference: loop over every distinct value as threshold, plain numpy, no searchsorted."""
    good = np.concatenate([np.asarray(m, float).ravel() for m, r in zip(maps, regions, strict=False) if not r])
    values = np.unique(np.concatenate([np.asarray(m, float).ravel() for m in maps]))
    points = [(0.0, 0.0)]
    for t in values[::-1]:
        fpr = float(np.mean(good >= t))
        total, count = 0.0, 0
        for m, image_regions in zip(maps, regions, strict=False):
            for mask, area in image_regions:
                total += min(1.0, float(np.sum(np.asarray(m)[mask] >= t)) / area)
                count += 1
        points.append((fpr, total / count))
    fpr, spro = map(np.array, zip(*points, strict=False))
    area = 0.0
    for i in range(1, len(fpr)):
        x0, x1, y0, y1 = fpr[i - 1], fpr[i], spro[i - 1], spro[i]
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def test_perfect_separation_scores_one():
    good = np.zeros((4, 4))
    bad = np.zeros((4, 4))
    bad[0, 0] = bad[0, 1] = 1.0
    regions = [[], [(_mask((4, 4), (0, 0), (0, 1)), 2.0)]]
    # approx() without a tolerance in this file: hand-computed float64 values; its rel 1e-6 dwarfs their rounding
    assert au_spro([good, bad], regions, fpr_limit=0.5) == pytest.approx(1.0)


def test_hand_computed_partial_coverage_below_and_above_saturation():
    # good image: 10 pixels, values 0.0..0.9 -> FPR(t) = fraction of them >= t
    good = np.arange(10, dtype=float).reshape(2, 5) / 10
    bad = np.zeros((2, 5))
    bad[0, :4] = [0.95, 0.95, 0.05, 0.05]
    region = _mask((2, 5), (0, 0), (0, 1), (0, 2), (0, 3))
    # saturation 4 (full area): above t=0.9 sPRO = 2/4 = 0.5 at FPR 0 -> then FPR 0.1 at t=0.9, sPRO stays 0.5
    fpr, spro = spro_curve([good, bad], [[], [(region, 4.0)]], fpr_limit=0.2)
    assert fpr[:3].tolist() == pytest.approx([0.0, 0.0, 0.1])
    assert spro[:3].tolist() == pytest.approx([0.0, 0.5, 0.5])
    # area on [0, 0.2]: 0.5 on [0, 0.2] -> normalised 0.5
    assert au_spro([good, bad], [[], [(region, 4.0)]], fpr_limit=0.2) == pytest.approx(0.5)
    # saturation 2 (e.g. absolute 2 px): the 2 hits already saturate -> 1.0
    assert au_spro([good, bad], [[], [(region, 2.0)]], fpr_limit=0.2) == pytest.approx(1.0)


def test_relative_saturation_half_the_region():
    good = np.zeros((1, 4))
    bad = np.array([[1.0, 0.0, 0.0, 0.0]])
    region = _mask((1, 4), (0, 0), (0, 1), (0, 2), (0, 3))
    # relative saturation 0.5 of area 4 -> s = 2; 1 hit -> sPRO 0.5 at FPR 0; next point (FPR 1, sPRO 1) at t = 0.
    # Linear interpolation at FPR 0.05 gives 0.525, so the area is 0.05 * (0.5 + 0.525) / 2 -> normalised 0.5125.
    assert au_spro([good, bad], [[], [(region, 2.0)]], fpr_limit=0.05) == pytest.approx(0.5125)


def test_several_regions_are_averaged():
    good = np.zeros((2, 2))
    bad = np.array([[1.0, 0.0], [0.0, 0.0]])
    region_hit = _mask((2, 2), (0, 0))
    region_missed = _mask((2, 2), (1, 1))
    # mean sPRO 0.5 at FPR 0 (one region hit, one missed), then (1, 1) at t = 0: interpolated area -> 0.5125
    assert au_spro([good, bad], [[], [(region_hit, 1.0), (region_missed, 1.0)]], 0.05) == pytest.approx(0.5125)


def test_anomaly_free_images_only_shift_the_fpr():
    bad = np.array([[0.9, 0.1]])
    region = [(_mask((1, 2), (0, 0)), 1.0)]
    quiet = np.zeros((1, 2))
    noisy = np.array([[0.95, 0.0]])  # one good pixel above the defect: FPR 0.5 before the region is hit
    assert au_spro([quiet, bad], [[], region], 0.05) == pytest.approx(1.0)
    assert au_spro([noisy, bad], [[], region], 0.05) == pytest.approx(0.0)
    # the anomalous image's pixels outside its region (0.1) never count as false positives
    assert au_spro([quiet, np.array([[0.9, 5.0]])], [[], region], 0.05) == pytest.approx(1.0)


def test_maps_at_another_resolution_are_resized_to_the_masks():
    good = torch.zeros(4, 4)
    bad_small = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    score_small = au_spro([good, bad_small], [[], [(mask, 4.0)]], 0.05)
    bad_big = torch.nn.functional.interpolate(bad_small[None, None], size=(4, 4), mode="bilinear")[0, 0]
    assert score_small == pytest.approx(au_spro([good, bad_big], [[], [(mask, 4.0)]], 0.05))


def test_interpolation_at_the_fpr_limit():
    fpr = np.array([0.0, 0.0, 0.1])
    values = np.array([0.0, 1.0, 0.0])
    # from (0,1) linearly to (0.1,0): at 0.05 the value is 0.5 -> area 0.05*(1+0.5)/2
    assert integrate_to_limit(fpr, values, 0.05) == pytest.approx(0.0375)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_brute_force_on_random_data(seed):
    rng = np.random.default_rng(seed)
    maps, regions = [], []
    for index in range(8):
        anomaly_map = rng.random((6, 7)).round(2)  # ties on purpose
        image_regions = []
        if index % 2:
            for _ in range(rng.integers(1, 3)):
                mask = rng.random((6, 7)) < 0.2
                mask[rng.integers(6), rng.integers(7)] = True
                area = float(mask.sum()) * (0.5 if rng.random() < 0.5 else 1.0)
                image_regions.append((mask, area if rng.random() < 0.5 else min(3.0, mask.sum())))
                anomaly_map[mask] += 0.3
        maps.append(anomaly_map)
        regions.append(image_regions)
    for limit in (0.05, 0.3, 1.0):
        # two float64 implementations of one formula: summation order only (~1e-15 x regions); 1e-9 leaves 6 orders
        assert au_spro(maps, regions, limit) == pytest.approx(brute_force_au_spro(maps, regions, limit), abs=1e-9)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="anomaly-free"):
        au_spro([np.ones((2, 2))], [[(np.ones((2, 2), bool), 1.0)]])
    with pytest.raises(ValueError, match="NaN"):
        au_spro([np.full((2, 2), np.nan), np.ones((2, 2))], [[], [(np.ones((2, 2), bool), 1.0)]])
    with pytest.raises(ValueError, match="fpr_limit"):
        au_spro([np.ones((2, 2))], [[]], fpr_limit=0.0)
    with pytest.raises(ValueError, match="2 maps but 1"):
        au_spro([np.ones((2, 2))] * 2, [[]])


def test_rank_auroc_matches_sklearn_on_any_scale_with_ties():
    from sklearn.metrics import roc_auc_score

    from anomalib_npgmf.metrics import rank_auroc

    generator = np.random.default_rng(0)
    labels = generator.integers(0, 2, 200)
    scores = np.round(generator.normal(size=200) + labels, 1) * 1000.0  # large values, many ties
    # AUROC is a ratio of pair counts: both sides are that ratio rounded once or twice in float64 (~1e-16)
    assert rank_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert rank_auroc(torch.tensor([30.0, 31.0, 32.0]), torch.tensor([0, 0, 1])) == 1.0
    assert np.isnan(rank_auroc([1.0, 2.0], [0, 0]))
    with pytest.raises(ValueError, match="NaN"):
        rank_auroc([float("nan"), 1.0], [0, 1])


def _brute_force_delong(scores_a, scores_b, labels):
    """Independent reference for the paired AUROC difference: the components from every positive-negative pair."""
    labels = np.asarray(labels, bool)
    per_score = []
    for scores in (np.asarray(scores_a, float), np.asarray(scores_b, float)):
        pos, neg = scores[labels], scores[~labels]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        per_score.append((psi.mean(axis=1), psi.mean(axis=0)))
    pos_diff = per_score[0][0] - per_score[1][0]
    neg_diff = per_score[0][1] - per_score[1][1]
    variance = pos_diff.var(ddof=1) / labels.sum() + neg_diff.var(ddof=1) / (~labels).sum()
    return pos_diff.mean(), np.sqrt(variance)


def test_paired_auroc_difference_matches_the_pairwise_definition_with_ties():
    from anomalib_npgmf.metrics import paired_auroc_difference, rank_auroc

    rng = np.random.default_rng(0)
    labels = rng.random(60) < 0.4
    base = rng.normal(size=60) + labels
    scores_a = np.round(base + 0.3 * rng.normal(size=60), 1)  # rounded: ties within and across the classes
    scores_b = np.round(base + 0.8 * rng.normal(size=60) + 40.0, 1)  # another scale: ranks only
    lead, error = paired_auroc_difference(torch.tensor(scores_a), torch.tensor(scores_b), torch.tensor(labels))
    expected_lead, expected_error = _brute_force_delong(scores_a, scores_b, labels)
    assert abs(expected_lead) > 0.01 and expected_error > 0.01  # a difference and an error to get right
    assert lead == pytest.approx(expected_lead, abs=1e-12)
    assert error == pytest.approx(expected_error, abs=1e-12)
    assert lead == pytest.approx(rank_auroc(scores_a, labels) - rank_auroc(scores_b, labels), abs=1e-12)


def test_paired_auroc_difference_of_a_score_with_itself_is_exactly_zero_and_pairing_shrinks_the_error():
    from anomalib_npgmf.metrics import paired_auroc_difference

    rng = np.random.default_rng(1)
    labels = torch.tensor(rng.random(80) < 0.5)
    base = torch.tensor(rng.normal(size=80)) + labels.double()
    assert paired_auroc_difference(base, base, labels) == (0.0, 0.0)
    nudged = base + 0.05 * torch.tensor(rng.normal(size=80))
    unrelated = torch.tensor(rng.normal(size=80)) + labels.double()
    _, paired_error = paired_auroc_difference(base, nudged, labels)
    _, unpaired_error = paired_auroc_difference(base, unrelated, labels)
    assert unpaired_error > 0.05
    assert paired_error < unpaired_error / 3  # a near-copy's AUROC moves with the original's


def test_paired_auroc_difference_refuses_a_class_it_cannot_estimate():
    from anomalib_npgmf.metrics import paired_auroc_difference

    with pytest.raises(ValueError, match="at least 2 images of each class"):
        paired_auroc_difference(torch.arange(4.0), torch.arange(4.0), torch.tensor([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="differ in length"):
        paired_auroc_difference(torch.arange(4.0), torch.arange(5.0), torch.tensor([0, 0, 1, 1]))
