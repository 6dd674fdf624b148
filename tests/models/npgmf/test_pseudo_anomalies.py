"""``models/npgmf/pseudo_anomalies.py``: parts are found, removed and duplicated; the weight chosen separates best."""

import zlib

import numpy as np
import pytest
import torch

from anomalib_npgmf.models.common import image_seed
from anomalib_npgmf.models.npgmf.pseudo_anomalies import (
    CANDIDATE_WEIGHTS,
    SWITCH_STANDARD_ERRORS,
    best_weight,
    choose_weight,
    image_parts,
    part_anomalies,
    switch_weight,
    weight_separations,
)


def _scene() -> torch.Tensor:
    """A grey 48 px image with a dark frame line (not a part: as tall as the image) and two small coloured squares."""
    image = torch.full((3, 48, 48), 0.6)
    image[:, :, 2] = 0.1  # frame line
    image[:, 8:14, 10:16] = torch.tensor([0.9, 0.5, 0.1])[:, None, None]
    image[:, 30:36, 30:36] = torch.tensor([0.1, 0.2, 0.9])[:, None, None]
    return image


def _part_count(image: torch.Tensor) -> int:
    return len(image_parts(image)[1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_one_part_is_removed_and_one_duplicated_the_frame_untouched(seed):
    image = _scene()
    assert _part_count(image) == 2  # the frame line is not a part
    made = part_anomalies(image, seed)
    assert set(made) == {"removed", "duplicated"}
    assert _part_count(made["removed"]) == 1
    assert _part_count(made["duplicated"]) == 3
    for altered in made.values():
        assert torch.equal(altered[:, :, 2], image[:, :, 2])
    removed_pixels = (made["removed"] != image).any(dim=0)
    assert torch.equal(made["removed"][:, removed_pixels].unique(dim=1), torch.tensor([[0.6], [0.6], [0.6]]))
    # the duplicate is a copy of one of the two squares' colours, pasted on background only
    pasted = (made["duplicated"] != image).any(dim=0)
    assert int(pasted.sum()) == 36 and bool((image[:, pasted] == 0.6).all())


def test_the_same_seed_makes_the_same_pseudo_anomalies_and_seeds_come_from_the_pixels():
    first, second = part_anomalies(_scene(), 7), part_anomalies(_scene(), 7)
    for kind in first:
        torch.testing.assert_close(first[kind], second[kind], rtol=0, atol=0)
    assert image_seed(_scene()) == image_seed(_scene().clone()) != image_seed(_scene().flip(-1))
    assert image_seed(_scene()) == zlib.crc32(_scene().numpy().tobytes())  # crc32: the same in every process


def test_an_image_without_parts_gives_none_and_one_without_room_no_duplicate():
    assert part_anomalies(torch.full((3, 48, 48), 0.5), 0) == {}
    crowded = torch.full((3, 12, 12), 0.6)
    crowded[:, 1:5, 1:5] = 0.0  # one part, and no empty 4x4 square two pixels away from it
    crowded[:, 6:11, 6:11] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    made = part_anomalies(crowded, 0)
    assert set(made) == {"removed"}


def test_separations_rank_the_weighted_sum_and_the_best_weight_wins():
    # the invariant distance alone separates; the global one is noise that decides the order at small weights
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    invariant = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    global_ = torch.tensor([0.3, 0.0, 0.2, 0.0, 0.1, 0.0])
    separations = weight_separations(global_, invariant, labels)
    assert set(separations) == set(CANDIDATE_WEIGHTS)
    assert separations[0.5] == pytest.approx(3.5 / 9)  # 0.1 + 0.5 x 0.4 ties 0.3 + 0: a tie counts half
    assert separations[1.0] < 1.0 and separations[2.0] == separations[4.0] == separations[8.0] == 1.0
    assert best_weight(separations, fallback=4.0) == 4.0
    assert best_weight(separations, fallback=0.5) == 2.0  # the separating weight nearest the configured one


def test_ties_go_to_the_weight_nearest_the_configured_one():
    assert best_weight({0.5: 0.7, 1.0: 0.9, 4.0: 0.8}, fallback=4.0) == 1.0
    assert best_weight({0.5: 0.9, 2.0: 0.9, 8.0: 0.9}, fallback=4.0) in {2.0, 8.0}  # equally near on a log scale
    assert best_weight({0.5: 0.9, 2.0: 0.9, 8.0: 0.8}, fallback=4.0) == 2.0
    assert best_weight(dict.fromkeys(CANDIDATE_WEIGHTS, 0.75), fallback=4.0) == 4.0


def _near_tie() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """20 normals, 20 pseudo-anomalies; the invariant distance separates a little better than the global one."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.zeros(20), torch.ones(20)])
    global_ = torch.randn(40, generator=generator, dtype=torch.float64) + 0.8 * labels
    invariant = torch.randn(40, generator=generator, dtype=torch.float64) + 1.0 * labels
    return global_, invariant, labels


def test_the_best_weight_replaces_the_configured_one_only_beyond_one_standard_error():
    global_, invariant, labels = _near_tie()
    separations = weight_separations(global_, invariant, labels)
    best = best_weight(separations, fallback=0.5)
    assert best != 0.5 and separations[best] > separations[0.5]  # a lead, as on the 256 px pins runs
    weight, lead, error = switch_weight(global_, invariant, labels, separations, fallback=0.5)
    assert lead == pytest.approx(separations[best] - separations[0.5], abs=1e-12)
    assert 0 < lead <= SWITCH_STANDARD_ERRORS * error  # within the noise of 40 images
    assert weight == 0.5
    # the same images ten times over: the same AUROCs, a lead ~3x its shrunken error, so the best weight is taken
    many = [t.repeat(10) for t in (global_, invariant, labels)]
    many_separations = weight_separations(*many)
    assert many_separations == pytest.approx(separations, abs=1e-12)
    weight, many_lead, many_error = switch_weight(*many, many_separations, fallback=0.5)
    assert many_lead == pytest.approx(lead, abs=1e-12) and many_lead > SWITCH_STANDARD_ERRORS * many_error
    assert weight == best


def test_the_configured_weight_stays_when_the_best_is_it_or_the_error_cannot_be_estimated():
    global_, invariant, labels = _near_tie()
    separations = dict.fromkeys(CANDIDATE_WEIGHTS, 0.8)
    assert switch_weight(global_, invariant, labels, separations, fallback=4.0) == (4.0, 0.0, 0.0)
    one_pseudo = torch.cat([torch.zeros(39), torch.ones(1)])
    lopsided = {**dict.fromkeys(CANDIDATE_WEIGHTS, 0.5), 8.0: 1.0}
    weight, lead, _ = switch_weight(global_, invariant, one_pseudo, lopsided, fallback=4.0)
    assert weight == 4.0 and np.isnan(lead)


def test_choose_weight_is_the_switch_rule_on_its_own_separations_and_none_without_both_kinds():
    global_, invariant, labels = _near_tie()
    many = [t.repeat(10) for t in (global_, invariant, labels)]  # a lead beyond its error: the best is taken
    choice = choose_weight(*many, CANDIDATE_WEIGHTS, fallback=0.5)
    separations = weight_separations(*many)
    assert max(separations.values()) > min(separations.values())
    assert choice.separations == separations
    assert (choice.weight, choice.lead, choice.error) == switch_weight(*many, separations, fallback=0.5)
    assert choice.weight != 0.5
    assert choose_weight(global_, invariant, torch.zeros_like(labels), CANDIDATE_WEIGHTS, 4.0) is None
    assert choose_weight(global_, invariant, torch.ones_like(labels), CANDIDATE_WEIGHTS, 4.0) is None
