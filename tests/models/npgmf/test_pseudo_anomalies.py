"""``models/npgmf/pseudo_anomalies.py``: parts are found, removed and duplicated; the weight chosen separates best."""

import zlib

import pytest
import torch

from anomalib_npgmf.models.common import image_seed
from anomalib_npgmf.models.npgmf.pseudo_anomalies import (
    CANDIDATE_WEIGHTS,
    best_weight,
    image_parts,
    part_anomalies,
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
