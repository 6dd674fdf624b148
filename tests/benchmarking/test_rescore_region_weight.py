"""``benchmarks/accuracy/rescore_region_weight.py``: rescoring a trained Npgmf with another ``region_weight`` is the
same as building it with that weight (the weight changes no fitted state), and the model is left as it was."""

from pathlib import Path

import pytest
import torch

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf, tiny_normal_batch
from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("rescore_region_weight")


def test_a_weight_set_after_fitting_equals_building_with_it(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking import saved_runs
    from anomalib_npgmf.benchmarking.data import SMALL_DATA
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    rescored = fitted_tiny_npgmf(use_region_prior=True, fusion_weights=(1.0, 2.0, 1.0, 1.0))
    built = fitted_tiny_npgmf(use_region_prior=True, fusion_weights=(1.0, 2.0, 1.0, 1.0), region_weight=3.0)
    trained = dict(rescored.model.fusion_weights)
    figures = script.rescore(rescored, tmp_path, "demo_box", weights=(3.0,))
    assert rescored.model.fusion_weights == trained  # restored
    assert figures == {"3.0": saved_runs.map_figures(built, _datamodule(tmp_path))}
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        rescored.model.fusion_weights["region"] = 3.0 / 5.0  # the four map weights sum to 5
        after, expected = rescored.model(images).anomaly_map, built.model(images).anomaly_map
    assert expected.std() > 0  # a spread, so the comparison can fail
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_repainting_equals_building_with_the_other_painting(script):
    """Runs trained before ``region_relative`` were painted absolute: repainting one relative (the normalisation
    refitted on the same normals) gives what fitting it relative gives, and back."""
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    for start, target in ((False, True), (True, False)):
        repainted = fitted_tiny_npgmf(use_region_prior=True, region_relative=start)
        before = repainted.model(images).anomaly_map
        script.repaint(repainted, [[tiny_normal_batch()]], relative=target)
        built = fitted_tiny_npgmf(use_region_prior=True, region_relative=target)
        with torch.no_grad():
            after, expected = repainted.model(images).anomaly_map, built.model(images).anomaly_map
        assert expected.std() > 0 and not torch.allclose(before, expected)  # the painting changes the map
        torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_a_run_without_the_region_prior_is_named(script, tmp_path: Path):
    with pytest.raises(ValueError, match="has no region prior"):
        script.rescore(fitted_tiny_npgmf(), tmp_path, "demo_box")


def _datamodule(root: Path):
    from anomalib_npgmf.benchmarking.data import loco_datamodule

    datamodule = loco_datamodule(root / "data", "demo_box")
    datamodule.setup("test")
    return datamodule
