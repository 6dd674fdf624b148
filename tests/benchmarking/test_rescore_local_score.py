"""``benchmarks/accuracy/rescore_local_score.py``: switching the calibrated local score on in a trained Npgmf (fitted
on the same normals) is the same as building it with the switch on, and the weighted local maximum's end points are
the model's own scores (``W = 1``: as trained; ``W = 0``: ``score_parts`` of the image-level priors)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf, tiny_normal_batch
from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("rescore_local_score")


def test_calibrating_a_fitted_model_equals_building_it_calibrated(script):
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    rescored = fitted_tiny_npgmf()
    built = fitted_tiny_npgmf(calibrated_local_score=True)
    with torch.no_grad():
        before = rescored.model(images)
        script.calibrate(rescored, [[tiny_normal_batch()]])
        after, expected = rescored.model(images), built.model(images)
    assert expected.pred_score.std() > 0  # a spread, so the comparisons can fail
    assert not torch.allclose(before.pred_score, expected.pred_score)
    torch.testing.assert_close(after.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(after.anomaly_map, before.anomaly_map, rtol=0, atol=0)


def test_the_weighted_maximum_ends_at_the_models_own_scores(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking import saved_runs
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    datamodule = loco_datamodule(tmp_path / "data", "demo_box")
    datamodule.setup("test")
    scores, kinds = script.weighted_scores(fitted_tiny_npgmf(), datamodule, (1.0, 0.0))
    priors_only = saved_runs.score_test_set(fitted_tiny_npgmf(score_parts=["global"]), datamodule).results.scores
    assert scores["max"].std() > 0 and not np.allclose(scores["max"], priors_only)  # W = 0 and 1 differ: can fail
    # scores summed in float32 by the model and in float64 here: a few float32 units in the last place, relative
    np.testing.assert_allclose(scores["local x0"], priors_only, rtol=8 * 2.0**-23, atol=0)
    np.testing.assert_allclose(scores["local x1"], scores["max"], rtol=0, atol=1e-12)  # (a - b) + b in float64
    as_trained = scores["max"]
    scores, _ = script.weighted_scores(fitted_tiny_npgmf(), datamodule, (0.25,))
    built = saved_runs.score_test_set(fitted_tiny_npgmf(local_score_weight=0.25), datamodule).results.scores
    np.testing.assert_allclose(scores["local x0.25"], built, rtol=8 * 2.0**-23, atol=0)
    # W is absolute: a run built at 0.25, rescored at 1, is the model built with 1
    scores, _ = script.weighted_scores(fitted_tiny_npgmf(local_score_weight=0.25), datamodule, (1.0,))
    assert not np.allclose(scores["max"], as_trained)  # the two runs' own scores differ, so this can fail
    np.testing.assert_allclose(scores["local x1"], as_trained, rtol=8 * 2.0**-23, atol=0)
    figures = script.rescore(fitted_tiny_npgmf(), tmp_path, "demo_box", local_weights=(1.0, 0.5, 0.0))
    assert set(figures) == {"max", "local x1", "local x0.5", "local x0", "calibrated"}
    assert figures["max"] == script.image_aurocs(scores["max"], kinds)


def test_a_calibrated_run_is_named(script, tmp_path: Path):
    with pytest.raises(ValueError, match="trained with calibrated_local_score"):
        script.rescore(fitted_tiny_npgmf(calibrated_local_score=True), tmp_path, "demo_box")


def test_the_invariant_weight_is_rescaled_as_building_with_it(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking import saved_runs
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    datamodule = loco_datamodule(tmp_path / "data", "demo_box")
    datamodule.setup("test")
    trained = fitted_tiny_npgmf(use_invariant_prior=True)  # invariant_weight 4, local weight 1
    scores, _ = script.weighted_scores(trained, datamodule, (0.25,), (1.0,))
    built = fitted_tiny_npgmf(use_invariant_prior=True, invariant_weight=1.0, local_score_weight=0.25)
    expected = saved_runs.score_test_set(built, datamodule).results.scores
    assert not np.allclose(scores["local x0.25"], expected)  # the invariant weight moved the scores: this can fail
    # float32 sums by the model, float64 here: a few units in the last place of the score's magnitude
    np.testing.assert_allclose(scores["local x0.25 invariant x1"], expected, rtol=8 * 2.0**-23, atol=0)
