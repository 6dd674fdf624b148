"""``benchmarks/accuracy/rescore_part_weight.py``: rescoring a fitted Npgmf with another ``part_weight`` gives what
building it with that weight gives, and weight 0 gives the model without the part prior."""

from pathlib import Path

import pytest
import torch

from anomalib_npgmf.benchmarking import saved_runs

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf
from .conftest import load_accuracy_script

PART = {"use_part_prior": True, "part_kinds": 2}


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("rescore_part_weight")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    from anomalib_npgmf.benchmarking.data import SMALL_DATA
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    return tmp_path


def _figures(model, root: Path) -> dict[str, float]:
    from anomalib_npgmf.benchmarking.data import loco_datamodule

    datamodule = loco_datamodule(root / "data", "demo_box")
    datamodule.setup("test")
    scored = saved_runs.score_test_set(model, datamodule)
    assert torch.tensor(scored.results.scores).std() > 0  # a spread, so the comparison can fail
    return dict(scored.results.table()["logical"])


def test_a_weight_rescored_equals_building_with_it_and_zero_equals_no_part_prior(script, data_root: Path):
    rescored = fitted_tiny_npgmf(**PART)  # part_weight 1
    figures = script.rescore(rescored, data_root, "demo_box", weights=(0.0, 4.0), by_kind=True)
    built = _figures(fitted_tiny_npgmf(**PART, part_weight=4.0), data_root)
    without = _figures(fitted_tiny_npgmf(), data_root)
    for weight, expected in (("4", built), ("0", without)):
        for name in ("image_AUROC", "AU-sPRO"):
            assert figures[weight][f"logical {name}"] == pytest.approx(float(expected[name]), abs=1e-6), weight
    assert figures["0"] != figures["4"]  # the weight reaches the scores
    # per defect kind (--by-kind): every logical kind pooled against the good images is LOCO's logical image AUROC
    kinds = [name for name in figures["4"] if name.startswith("kind ") and "(all" not in name]
    assert len(kinds) >= 2
    assert figures["4"]["kind (all logical)"] == pytest.approx(figures["4"]["logical image_AUROC"], abs=1e-9)


def test_a_floor_rescored_equals_building_with_it(script, data_root: Path):
    """``--floors``: the part distance floored as ``part_floor`` floors it in the model (the floor set mid-way through
    this test set's normalised part distances, so it changes scores and the check can fail)."""
    from anomalib_npgmf.benchmarking.data import loco_datamodule

    rescored = fitted_tiny_npgmf(**PART)
    datamodule = loco_datamodule(data_root / "data", "demo_box")
    datamodule.setup("test")
    distances = script.part_scores(rescored, datamodule).scored.extra_maps["part"]
    assert distances.std() > 0
    floor = float(distances.median())
    figures = script.rescore(rescored, data_root, "demo_box", weights=(4.0,), floors=(None, floor))
    built = _figures(fitted_tiny_npgmf(**PART, part_weight=4.0, part_floor=floor), data_root)
    for name in ("image_AUROC", "AU-sPRO"):
        assert figures[f"4@{floor:g}"][f"logical {name}"] == pytest.approx(float(built[name]), abs=1e-6)
    assert figures[f"4@{floor:g}"]["logical image_AUROC"] != figures["4"]["logical image_AUROC"]


def test_a_run_without_the_part_prior_is_named(script, tmp_path: Path):
    with pytest.raises(ValueError, match="has no part prior"):
        script.rescore(fitted_tiny_npgmf(), tmp_path, "demo_box")
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "--weights", "-1"])
