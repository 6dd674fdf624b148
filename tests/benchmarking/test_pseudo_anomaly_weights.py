"""``benchmarks/accuracy/pseudo_anomaly_weights.py``: patch pseudo-anomalies alter one square of each normal image,
part pseudo-anomalies choose the weight the model itself chooses, and the test figures at the run's own weight are the
model's own. (The part generator and the choice rule are the package's: see
``tests/models/npgmf/test_pseudo_anomalies.py``.)"""

from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_npgmf.models.npgmf.pseudo_anomalies import CANDIDATE_WEIGHTS

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


def test_figures_at_the_trained_weight_are_the_models_own(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking import saved_runs
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    model = fitted_tiny_npgmf(use_invariant_prior=True)
    figures = script.measure(model, tmp_path, "demo_box", pseudo="patches")
    assert set(figures["pseudo-anomaly AUROC by weight"]) == set(CANDIDATE_WEIGHTS)
    assert figures["chosen weight"] in CANDIDATE_WEIGHTS
    assert figures["pseudo-anomalies"] == 3 * int(figures["pseudo-anomalies"] / 3) > 0  # three per normal image
    datamodule = loco_datamodule(tmp_path / "data", "demo_box")
    datamodule.setup("test")
    scored = saved_runs.score_test_set(model, datamodule)
    own = script.image_aurocs(np.asarray(scored.results.scores, dtype=np.float64), scored.kinds)
    assert figures["test at the trained weight"] == pytest.approx(own, abs=1e-12)
    # parts (the default): the weight the model's own choice makes on the run's calibration normals
    parts = script.measure(model, tmp_path, "demo_box")
    assert parts["pseudo-anomalies"] > 0
    auto = fitted_tiny_npgmf(use_invariant_prior=True, choose_invariant_weight=True)  # the same fit, same seed
    auto.model.invariant_weight.fill_(4.0)
    auto.choose_invariant_weight(saved_runs.calibration_loaders(tmp_path, "demo_box"))
    assert parts["chosen weight"] == float(auto.model.invariant_weight)
    with pytest.raises(ValueError, match="no invariant prior"):
        script.measure(fitted_tiny_npgmf(), tmp_path, "demo_box")
