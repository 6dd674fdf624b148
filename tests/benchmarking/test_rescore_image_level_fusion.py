"""``benchmarks/accuracy/rescore_image_level_fusion.py``: switching ``image_level_fusion`` in a trained Npgmf gives
what building it with that fusion gives (it changes no fitted state), and leaves the model as it was."""

from pathlib import Path

import numpy as np

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf
from .conftest import load_accuracy_script


def test_each_fusion_equals_the_model_built_with_it(tmp_path: Path):
    from anomalib_npgmf.benchmarking import saved_runs
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    script = load_accuracy_script("rescore_image_level_fusion")
    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    datamodule = loco_datamodule(tmp_path / "data", "demo_box")
    datamodule.setup("test")
    rescored = fitted_tiny_npgmf(use_invariant_prior=True)
    scored = script.scored_sets(rescored, datamodule)
    assert rescored.model.image_level_fusion == "sum"  # left as trained
    summed, maxed = (np.asarray(scored[fusion].results.scores) for fusion in ("sum", "max"))
    assert maxed.std() > 0 and not np.allclose(summed, maxed)  # the fusions differ, so the comparison can fail
    built = fitted_tiny_npgmf(use_invariant_prior=True, image_level_fusion="max")
    np.testing.assert_array_equal(maxed, saved_runs.score_test_set(built, datamodule).results.scores)
    figures = script.rescore(rescored, tmp_path, "demo_box")
    assert list(figures) == ["sum", "max"]
    assert all(set(row) == {"logical", "structural"} for row in figures.values())
