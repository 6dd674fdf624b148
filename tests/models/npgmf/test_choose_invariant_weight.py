"""``choose_invariant_weight``: the invariant prior's weight is chosen once at fit time by the rule of
``pseudo_anomalies.py``, read by the image score, kept through a state dict and baked into the ONNX graph."""

import logging
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_npgmf.models.npgmf.pseudo_anomalies import CANDIDATE_WEIGHTS, switch_weight, weight_separations
from anomalib_npgmf.models.npgmf.torch_model import fusion_shares

from .conftest import (
    SMALL_BOX,
    TINY_NPGMF,
    assert_a_chosen_weight_scores_as_the_fixed_one,
    flat_normal_batch,
    seeded_npgmf,
    tiny_datamodule,
)

AUTO = {**TINY_NPGMF, "use_invariant_prior": True, "choose_invariant_weight": True}
TINY_FUSION = (1.0, 1.0, 1.0, 1.0)  # Npgmf's default fusion_weights, which the shares are computed from
_model = partial(seeded_npgmf, AUTO, "demo_box")  # the model under test, with overrides (conftest's ``fitted``)
SCENE = ("demo_box", SMALL_BOX)  # parts to remove and duplicate (conftest's ``scene``)


def _test_images(scene) -> torch.Tensor:
    return torch.cat([batch.image for batch in scene.test_dataloader()])


@pytest.mark.parametrize(
    ("overrides", "needs"),
    [
        ({"use_invariant_prior": False}, "use_invariant_prior"),
        ({"use_global_prior": False}, "use_global_prior"),
        ({"image_level_fusion": "max"}, "image_level_fusion 'sum'"),
    ],
)
def test_it_needs_both_image_level_priors_summed(overrides, needs):
    with pytest.raises(ValueError, match=needs):
        _model(**overrides)


def test_the_weight_chosen_is_the_switch_rules_on_the_normals_pseudo_anomalies(fitted, scene):
    net = fitted.model
    assert bool(net.invariant_weight_chosen)
    rows = fitted.pseudo_anomaly_distances([scene.val_dataloader()])
    normals, pseudo = int((rows[:, 2] == 0).sum()), int(rows[:, 2].sum())
    assert normals == 6 and pseudo >= 6  # every validation image of the box scene has parts to remove
    assert float(rows[:, 0].std()) > 0 and float(rows[:, 1].std()) > 0  # distances spread: the ranking means something
    separations = weight_separations(rows[:, 0], rows[:, 1], rows[:, 2])
    chosen = float(net.invariant_weight)
    assert chosen in CANDIDATE_WEIGHTS
    assert chosen == switch_weight(rows[:, 0], rows[:, 1], rows[:, 2], separations, fallback=4.0)[0]
    stored = dict(zip(CANDIDATE_WEIGHTS, net.invariant_weight_aurocs.tolist(), strict=True))
    assert stored == pytest.approx(separations, abs=1e-12)
    assert net.fusion_weights["invariant"] == pytest.approx(fusion_shares(TINY_FUSION, chosen, 3.0)["invariant"])


def test_the_pseudo_anomalies_do_not_depend_on_where_the_dataset_lies(fitted, scene, tmp_path: Path):
    """Seeded by pixels, not paths: the same images in another folder give the same distances (so the same weight)."""
    import shutil

    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(Path(scene.root), moved)
    elsewhere = tiny_datamodule(moved, "demo_box")
    elsewhere.setup()
    here = fitted.pseudo_anomaly_distances([scene.val_dataloader()])
    there = fitted.pseudo_anomaly_distances([elsewhere.val_dataloader()])
    assert int(here[:, 2].sum()) > 0
    torch.testing.assert_close(there, here, rtol=0, atol=0)


def test_the_image_score_is_the_fixed_weight_models_at_the_chosen_weight(fitted, scene):
    assert_a_chosen_weight_scores_as_the_fixed_one(fitted, _model, "invariant", (0.5, 8.0), _test_images(scene))


def test_a_state_dict_carries_the_chosen_weight_and_a_refit_keeps_it(fitted, scene):
    state = fitted.state_dict()
    fitted.model.set_invariant_weight(0.5)
    fitted.fit_normalization([scene.val_dataloader()])  # chosen once: a later calibration does not choose again
    assert float(fitted.model.invariant_weight) == 0.5
    restored = _model()
    assert restored.model.fusion_weights["invariant"] == fusion_shares(TINY_FUSION, 4.0, 3.0)["invariant"]
    restored.load_state_dict(fitted.state_dict())
    assert restored.model.fusion_weights == fitted.model.fusion_weights
    assert restored.model.fusion_weights["invariant"] == fusion_shares(TINY_FUSION, 0.5, 3.0)["invariant"]
    fitted.load_state_dict(state)


def test_without_parts_the_configured_weight_stays_with_a_warning(fitted, caplog):
    flat = flat_normal_batch()
    state = fitted.state_dict()
    model = _model(invariant_weight=2.0)
    model.load_state_dict({key: value for key, value in state.items() if "invariant_weight" not in key}, strict=False)
    with caplog.at_level(logging.WARNING):
        model.choose_invariant_weight([[flat]])
    assert "no part-level pseudo-anomalies" in caplog.text and "stays 2" in caplog.text
    assert bool(model.model.invariant_weight_chosen) and float(model.model.invariant_weight) == 2.0


def test_the_onnx_graph_holds_the_chosen_weight(fitted, scene, tmp_path: Path):
    import onnxruntime

    images = _test_images(scene)
    state = fitted.state_dict()
    exported = {}
    for weight in (0.5, 8.0):
        fitted.model.set_invariant_weight(weight)
        with torch.no_grad():
            want = fitted(images).pred_score.reshape(-1).numpy()
        path = fitted.to_onnx(tmp_path / f"w{weight:g}")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        outputs = dict(zip(names, session.run(None, {"input": images.numpy()}), strict=True))
        exported[weight] = np.asarray(outputs["pred_score"]).reshape(-1)
        # float32 graph against float32 eager: the same operations, rounding of differently blocked convolutions
        np.testing.assert_allclose(exported[weight], want, rtol=1e-4, atol=1e-4)
    assert float(np.abs(exported[0.5] - exported[8.0]).max()) > 1e-3
    fitted.load_state_dict(state)
