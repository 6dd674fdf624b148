"""``benchmarks/accuracy/rescore_score_parts.py``: rescoring a trained Npgmf with other ``score_parts`` is the same
as training it with them (they change no fitted state), choices the run cannot make are skipped, and the model is
left as it was."""

from pathlib import Path

import pytest
import torch

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf
from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("rescore_score_parts")


def test_setting_score_parts_after_fitting_equals_fitting_with_them():
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    rescored = fitted_tiny_npgmf(use_invariant_prior=True)
    built = fitted_tiny_npgmf(use_invariant_prior=True, score_parts=["global", "invariant"])
    with torch.no_grad():
        before = rescored.model(images).pred_score
        rescored.model.score_parts = ("global", "invariant")
        after, expected = rescored.model(images).pred_score, built.model(images).pred_score
    assert expected.std() > 0  # a spread, so the comparisons can fail
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_it_skips_parts_the_run_lacks_and_restores_the_model(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking.data import SMALL_DATA
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    model = fitted_tiny_npgmf()  # no invariant prior
    trained_parts = model.model.score_parts
    figures = script.rescore(model, tmp_path, "demo_box")
    assert set(figures) == {"all", "global"}
    assert model.model.score_parts == trained_parts
    for row in figures.values():
        assert set(row) == {"logical", "structural"}
        assert all(0.0 <= value <= 1.0 for value in row.values())
