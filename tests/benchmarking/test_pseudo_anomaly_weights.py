"""``benchmarks/accuracy/pseudo_anomaly_weights.py``: pseudo-anomalies alter one square of each normal image, the
weight chosen is the best-separating one, and the test figures at the run's own weight are the model's own."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf
from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("pseudo_anomaly_weights")


def test_each_pseudo_anomaly_alters_one_square_of_its_image(script):
    images = torch.rand((4, 3, 48, 48), generator=torch.Generator().manual_seed(0))
    made = script.patch_anomalies(images, seed=3)
    assert made.shape == (12, 3, 48, 48)
    torch.testing.assert_close(made, script.patch_anomalies(images, seed=3), rtol=0, atol=0)  # seeded
    for index, altered in enumerate(made):
        changed = (altered != images[index % 4]).any(dim=0).nonzero()
        assert len(changed) > 0, f"pseudo-anomaly {index} is its normal image"
        rows, columns = changed[:, 0], changed[:, 1]
        height, width = int(rows.max() - rows.min()) + 1, int(columns.max() - columns.min()) + 1
        assert max(height, width) < 48 // 3  # inside one square of side < H/3
    recoloured = made[8:]
    square = (recoloured != images).any(dim=1)
    assert torch.equal(recoloured[:, 0][square], images[:, 2][square])  # channels rolled by one inside the square


def _scene() -> torch.Tensor:
    """A grey 48 px image with a dark frame line (not a part: as tall as the image) and two small coloured squares."""
    image = torch.full((3, 48, 48), 0.6)
    image[:, :, 2] = 0.1  # frame line
    image[:, 8:14, 10:16] = torch.tensor([0.9, 0.5, 0.1])[:, None, None]
    image[:, 30:36, 30:36] = torch.tensor([0.1, 0.2, 0.9])[:, None, None]
    return image


def _part_count(script, image: torch.Tensor) -> int:
    return len(script.image_parts(image)[1])


def test_part_pseudo_anomalies_remove_one_part_and_duplicate_one(script):
    images = torch.stack([_scene(), _scene().flip(-1)])
    assert [_part_count(script, image) for image in images] == [2, 2]  # the frame line is not a part
    made = script.part_anomalies(images, seed=1)
    assert made.shape == (4, 3, 48, 48)
    assert [_part_count(script, image) for image in made] == [1, 1, 3, 3]  # removed, removed, duplicated, duplicated
    for altered, original in zip(made, torch.cat([images, images]), strict=True):
        assert torch.equal(altered[:, :, 2], original[:, :, 2])  # the frame is untouched
    torch.testing.assert_close(made, script.part_anomalies(images, seed=1), rtol=0, atol=0)  # seeded


def test_part_pseudo_anomalies_need_a_part(script):
    with pytest.raises(ValueError, match="no image of the validation set has a part"):
        script.part_anomalies(torch.full((2, 3, 48, 48), 0.5))


def test_the_chosen_weight_separates_best_and_ties_go_to_the_trained_one(script):
    assert script.chosen_weight({0.5: 0.7, 1.0: 0.9, 4.0: 0.8}, trained=4.0) == 1.0
    assert script.chosen_weight({0.5: 0.9, 2.0: 0.9, 8.0: 0.9}, trained=4.0) in {2.0, 8.0}
    assert script.chosen_weight({0.5: 0.9, 2.0: 0.9, 8.0: 0.8}, trained=4.0) == 2.0


def test_figures_at_the_trained_weight_are_the_models_own(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking import saved_runs
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    model = fitted_tiny_npgmf(use_invariant_prior=True)
    figures = script.measure(model, tmp_path, "demo_box", pseudo="patches")
    assert script.measure(model, tmp_path, "demo_box")["chosen weight"] in script.WEIGHTS  # parts, the default
    assert set(figures["pseudo-anomaly AUROC by weight"]) == set(script.WEIGHTS)
    assert figures["chosen weight"] in script.WEIGHTS
    datamodule = loco_datamodule(tmp_path / "data", "demo_box")
    datamodule.setup("test")
    scored = saved_runs.score_test_set(model, datamodule)
    own = script.image_aurocs(np.asarray(scored.results.scores, dtype=np.float64), scored.kinds)
    assert figures["test at the trained weight"] == pytest.approx(own, abs=1e-12)
    with pytest.raises(ValueError, match="no invariant prior"):
        script.measure(fitted_tiny_npgmf(), tmp_path, "demo_box")
