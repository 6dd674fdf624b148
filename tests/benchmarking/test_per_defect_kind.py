"""``benchmarks/accuracy/per_defect_kind.py``: each defect kind is scored against the good images only."""

import pytest

from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("per_defect_kind")


def test_each_kind_is_ranked_against_the_good_images_only(script):
    scores = {
        "good/000": {"score": 0.1, "global": 0.5},
        "good/001": {"score": 0.2, "global": 0.6},
        "logical_anomalies/000": {"score": 0.9, "global": 0.0},  # missing: found by the score, not by the prior
        "logical_anomalies/001": {"score": 0.15, "global": 0.9},  # extra: half the goods rank above it
        "structural_anomalies/000": {"score": 0.8, "global": 0.55},
    }
    kinds = {
        "logical_anomalies/000": "missing",
        "logical_anomalies/001": "extra",
        "structural_anomalies/000": "scratch",
    }
    table = script.per_kind(scores, kinds)
    assert table["score"] == {
        "(all logical)": 0.75, "(all structural)": 1.0, "extra": 0.5, "missing": 1.0, "scratch": 1.0
    }  # fmt: skip
    assert table["global"] == {
        "(all logical)": 0.5, "(all structural)": 0.5, "extra": 1.0, "missing": 0.0, "scratch": 0.5
    }  # fmt: skip
