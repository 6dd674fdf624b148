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


def test_a_part_map_weight_rescored_equals_the_model_built_with_it(script, datamodule, tmp_path: Path):
    """``--part-map-weights``: each choice at each part map weight gives the figures of the model built with both."""
    part_map = {"use_part_prior": True, "part_kinds": 2, "part_in_map": True}
    rescored = fitted_tiny_npgmf(**part_map, part_map_weight=8.0)
    figures = script.rescore(rescored, tmp_path, "demo_box", choices=(OTHER_WEIGHTS,), part_map_weights=(2.0, 16.0))
    assert list(figures) == ["0,0.5,1,2 part map 2", "0,0.5,1,2 part map 16"]
    for weight in (2.0, 16.0):
        built = script.part_scores(
            fitted_tiny_npgmf(**part_map, part_map_weight=weight, fusion_weights=OTHER_WEIGHTS), datamodule
        )
        expected = script.figures(built, built.scored.maps, torch.tensor(built.scored.results.scores))
        for name, value in expected.items():  # 1e-4: the float32 rounding of the first test, through rank metrics
            assert figures[f"0,0.5,1,2 part map {weight:g}"][name] == pytest.approx(value, abs=1e-4), (weight, name)
    assert figures["0,0.5,1,2 part map 2"]["pixel AUROC"] != figures["0,0.5,1,2 part map 16"]["pixel AUROC"]
    with pytest.raises(ValueError, match="needs a run with the part map"):
        script.rescore(fitted_tiny_npgmf(), tmp_path, "demo_box", choices=(OTHER_WEIGHTS,), part_map_weights=(2.0,))


def test_map_only_rescoring_equals_the_model_built_with_score_fusion_weights(script, datamodule, tmp_path: Path):
    """``--map-only``: a choice moves the map and keeps the run's image score, as a model built with that choice as
    ``fusion_weights`` and the run's as ``score_fusion_weights`` scores; a run built so keeps its own score anyway."""
    run = fitted_tiny_npgmf()
    parts = script.part_scores(run, datamodule)
    apart = fitted_tiny_npgmf(fusion_weights=OTHER_WEIGHTS, score_fusion_weights=(1.0, 1.0, 1.0, 1.0))
    expected = saved_runs.score_test_set(apart, datamodule)
    expected_scores = torch.tensor(expected.results.scores)
    shares, own = fusion_shares(OTHER_WEIGHTS), fusion_shares((1.0, 1.0, 1.0, 1.0))
    _, moved = script.fused(parts, shares, run.model.score_parts, run.model.local_score_weight)
    maps, kept = script.fused(parts, shares, run.model.score_parts, run.model.local_score_weight, own)
    assert expected_scores.std() > 0 and not torch.allclose(moved, kept)  # without it the score would move
    torch.testing.assert_close(maps, expected.maps, rtol=1e-5, atol=1e-5)  # float32 rounding, as above
    torch.testing.assert_close(kept, expected_scores, rtol=1e-5, atol=1e-5)
    figures = script.rescore(run, tmp_path, "demo_box", choices=(OTHER_WEIGHTS,), map_only=True)["0,0.5,1,2"]
    assert figures == script.figures(parts, maps, kept)
    built = script.part_scores(apart, datamodule)
    own_figures = script.rescore(apart, tmp_path, "demo_box", choices=(OTHER_WEIGHTS,))["0,0.5,1,2"]
    assert own_figures == pytest.approx(script.figures(built, built.scored.maps, expected_scores), abs=1e-4)
