"""``benchmarks/accuracy/rescore_blur_sigma.py``: another blur set on a fitted Npgmf, with every part's
normalisation refitted on the same normals, is the model built with that ``blur_sigma``; and ``rescore`` leaves the
model as it was."""

from pathlib import Path

import pytest
import torch

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf, tiny_normal_batch
from .conftest import load_accuracy_script

IMAGES = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("rescore_blur_sigma")


@pytest.mark.parametrize("overrides", [{}, {"use_invariant_prior": True, "choose_invariant_weight": True}])
def test_another_blur_refitted_equals_building_with_it(script, overrides):
    rescored = fitted_tiny_npgmf(**overrides)
    with torch.no_grad():
        before = rescored.model(IMAGES)
    script.set_blur(rescored, 2.0, [[tiny_normal_batch()]])
    built = fitted_tiny_npgmf(**overrides, blur_sigma=2.0)
    with torch.no_grad():
        after, expected = rescored.model(IMAGES), built.model(IMAGES)
    assert expected.anomaly_map.std() > 0 and not torch.allclose(before.anomaly_map, expected.anomaly_map)
    torch.testing.assert_close(after.anomaly_map, expected.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(after.pred_score, expected.pred_score, rtol=0, atol=0)


def test_rescore_measures_each_sigma_and_restores_the_model(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking import saved_runs
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    loaders = saved_runs.calibration_loaders(tmp_path, "demo_box")
    rescored = fitted_tiny_npgmf()
    script.set_blur(rescored, 4.0, loaders)  # fitted on the folder's normals, as a saved run is
    with torch.no_grad():
        before = rescored.model(IMAGES).anomaly_map
    figures = script.rescore(rescored, tmp_path, "demo_box", sigmas=(2.0,))
    with torch.no_grad():
        torch.testing.assert_close(rescored.model(IMAGES).anomaly_map, before, rtol=0, atol=0)
    built = fitted_tiny_npgmf(blur_sigma=2.0)
    script.set_blur(built, 2.0, loaders)
    datamodule = loco_datamodule(tmp_path / "data", "demo_box")
    datamodule.setup("test")
    assert figures == {"2": saved_runs.map_figures(built, datamodule)}
