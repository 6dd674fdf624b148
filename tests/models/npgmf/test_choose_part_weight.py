"""``choose_part_weight``: the part prior's weight is chosen once at fit time by ``choose_invariant_weight``'s rule on
the same pseudo-anomalies, with the invariant prior at its chosen weight in the score; read by the image score, kept
through a state dict, and what a model built with that fixed weight scores."""

import logging
from functools import partial

import pytest
import torch

from anomalib_npgmf.metrics import rank_auroc
from anomalib_npgmf.models.npgmf.fitting import PSEUDO_COLUMNS
from anomalib_npgmf.models.npgmf.pseudo_anomalies import PART_CANDIDATE_WEIGHTS, switch_weight, weight_separations
from anomalib_npgmf.models.npgmf.torch_model import fusion_shares

from .conftest import (
    CHOSEN_WEIGHTS,
    SMALL_SCREWS,
    TINY_NPGMF,
    assert_a_chosen_weight_scores_as_the_fixed_one,
    flat_normal_batch,
    seeded_npgmf,
)

AUTO = {**TINY_NPGMF, **CHOSEN_WEIGHTS}
TINY_FUSION = (1.0, 1.0, 1.0, 1.0)
COLUMN = {name: index for index, name in enumerate(PSEUDO_COLUMNS)}
_model = partial(seeded_npgmf, AUTO, "demo_screws")  # the model under test, with overrides (conftest's ``fitted``)
SCENE = ("demo_screws", SMALL_SCREWS)  # loose parts to remove and duplicate (conftest's ``scene``)


@pytest.mark.parametrize(
    ("overrides", "needs"),
    [
        ({"use_part_prior": False}, "use_part_prior"),
        ({"image_level_fusion": "max"}, "image_level_fusion 'sum'"),
        ({"score_parts": ("logical", "structural", "global")}, "leaves it out"),
    ],
)
def test_it_needs_the_part_prior_summed_into_the_image_score(overrides, needs):
    with pytest.raises(ValueError, match=needs):
        _model(**overrides)


def test_the_weight_chosen_is_the_switch_rules_with_the_chosen_invariant_weight_in_the_score(fitted, scene):
    net = fitted.model
    assert bool(net.part_weight_chosen) and bool(net.invariant_weight_chosen)
    rows = fitted.pseudo_anomaly_distances([scene.val_dataloader()])
    labels, part = rows[:, COLUMN["is_pseudo_anomaly"]], rows[:, COLUMN["part"]]
    assert int((labels == 0).sum()) == 8 and int(labels.sum()) >= 8
    assert float(part.std()) > 0 and rank_auroc(part, labels) > 0.6  # the part column reads the removed parts
    others = rows[:, COLUMN["global"]] + float(net.invariant_weight) * rows[:, COLUMN["invariant"]]
    assert float(others.std()) > 0
    separations = weight_separations(others, part, labels, PART_CANDIDATE_WEIGHTS)
    assert max(separations.values()) - min(separations.values()) > 0  # the candidates rank differently
    chosen = float(net.part_weight)
    assert chosen in PART_CANDIDATE_WEIGHTS
    assert chosen == switch_weight(others, part, labels, separations, fallback=4.0)[0]
    stored = dict(zip(PART_CANDIDATE_WEIGHTS, net.part_weight_aurocs.tolist(), strict=True))
    assert stored == pytest.approx(separations, abs=1e-12)
    shares = fusion_shares(TINY_FUSION, float(net.invariant_weight), 3.0, chosen, 8.0)
    assert net.fusion_weights["part"] == pytest.approx(shares["part"])
    assert net.fusion_weights["invariant"] == pytest.approx(shares["invariant"])


def test_the_image_score_is_the_fixed_weight_models_at_the_chosen_weight(fitted, scene):
    images = torch.cat([batch.image for batch in scene.test_dataloader()])
    assert_a_chosen_weight_scores_as_the_fixed_one(fitted, _model, "part", (0.5, 16.0), images)


def test_a_state_dict_carries_the_chosen_weight_and_a_refit_keeps_it(fitted, scene):
    state = fitted.state_dict()
    fitted.model.set_chosen_weight("part", 16.0)
    fitted.fit_normalization([scene.val_dataloader()])  # chosen once: a later calibration does not choose again
    assert float(fitted.model.part_weight) == 16.0
    restored = _model()
    invariant = fitted.model.current_invariant_weight
    assert restored.model.fusion_weights["part"] == fusion_shares(TINY_FUSION, 4.0, 3.0, 4.0)["part"]
    restored.load_state_dict(fitted.state_dict())
    assert restored.model.fusion_weights == fitted.model.fusion_weights
    assert restored.model.fusion_weights["part"] == fusion_shares(TINY_FUSION, invariant, 3.0, 16.0)["part"]
    fitted.load_state_dict(state)


def test_without_parts_the_configured_weight_stays_with_a_warning(fitted, caplog):
    flat = flat_normal_batch()
    model = _model(part_weight=2.0)
    state = {key: value for key, value in fitted.state_dict().items() if "part_weight" not in key}
    model.load_state_dict(state, strict=False)
    with caplog.at_level(logging.WARNING):
        model.choose_part_weight([[flat]])
    assert "no part-level pseudo-anomalies" in caplog.text and "part_weight stays 2" in caplog.text
    assert bool(model.model.part_weight_chosen) and float(model.model.part_weight) == 2.0


def test_a_checkpoint_from_before_32_and_64_were_candidates_still_loads(fitted):
    state = fitted.state_dict()
    key = "model.part_weight_aurocs"
    older = {**state, key: state[key][:6].clone()}  # saved when 16 was the largest candidate
    restored = _model()
    restored.load_state_dict(older)
    assert torch.equal(restored.model.part_weight_aurocs[:6], state[key][:6])
    assert restored.model.part_weight_aurocs[6:].eq(0).all()  # 0: not measured
    assert restored.model.fusion_weights == fitted.model.fusion_weights
