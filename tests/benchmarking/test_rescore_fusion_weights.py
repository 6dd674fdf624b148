"""``benchmarks/accuracy/rescore_fusion_weights.py``: weighting each part's cached map as another ``fusion_weights``
gives what building the model with those weights gives (the weights change no fitted state)."""

from pathlib import Path

import pytest
import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.models.npgmf.torch_model import fusion_shares

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf
from .conftest import load_accuracy_script

OTHER_WEIGHTS = (0.0, 0.5, 1.0, 2.0)


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("rescore_fusion_weights")


@pytest.fixture
def datamodule(tmp_path: Path):
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    module = loco_datamodule(tmp_path / "data", "demo_box")
    module.setup("test")
    return module


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"use_region_prior": True, "score_parts": ["global", "structural"]},
        {"use_invariant_prior": True, "local_score_weight": 0.25},  # the demo config's local weight
    ],
)
def test_cached_parts_weighted_equal_the_model_built_with_the_weights(script, datamodule, overrides):
    rescored = fitted_tiny_npgmf(**overrides)
    built = fitted_tiny_npgmf(**overrides, fusion_weights=OTHER_WEIGHTS)
    parts = script.part_scores(rescored, datamodule)
    shares = fusion_shares(OTHER_WEIGHTS, rescored.hparams["invariant_weight"], rescored.hparams["region_weight"])
    maps, scores = script.fused(parts, shares, rescored.model.score_parts, rescored.model.local_score_weight)
    expected = saved_runs.score_test_set(built, datamodule)
    expected_scores = torch.tensor(expected.results.scores)
    assert expected.maps.std() > 0 and expected_scores.std() > 0  # a spread, so the comparisons can fail
    assert not torch.allclose(parts.scored.maps, expected.maps)  # the other weights do change the map
    # float32 rounding only: the model blurs the weighted sum, the script sums the blurred parts (~1e-7 relative per
    # tap, maps of order 1)
    torch.testing.assert_close(maps, expected.maps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores, expected_scores, rtol=1e-5, atol=1e-5)


def test_rescore_reports_each_choice(script, datamodule, tmp_path: Path):
    figures = script.rescore(fitted_tiny_npgmf(), tmp_path, "demo_box", choices=((1.0, 1.0, 1.0, 1.0), OTHER_WEIGHTS))
    assert list(figures) == ["1,1,1,1", "0,0.5,1,2"]
    names = {"logical image_AUROC", "logical AU-sPRO", "structural image_AUROC", "structural AU-sPRO", "pixel AUROC"}
    assert all(set(row) == names for row in figures.values())
    assert figures["1,1,1,1"] != figures["0,0.5,1,2"]


def test_bad_weights_and_a_global_map_are_named(script, datamodule):
    with pytest.raises(SystemExit):
        script.main(["/nonexistent", "--weights", "1,-1,1,1"])
    with pytest.raises(ValueError, match="global_in_map"):
        script.part_scores(fitted_tiny_npgmf(global_in_map=True), datamodule)
    with pytest.raises(ValueError, match="calibrated_local_score: false and image_level_fusion: sum"):
        script.part_scores(fitted_tiny_npgmf(calibrated_local_score=True), datamodule)
