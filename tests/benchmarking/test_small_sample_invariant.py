"""``benchmarks/accuracy/small_sample_invariant.py``: logical AUROC ranks logical anomalies against good images only."""

import ast
from pathlib import Path

import pytest

from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("small_sample_invariant")


def test_logical_auroc_ignores_structural_anomalies(script):
    scores = {
        "good/000": {"score": 0.1, "invariant": 0.7},
        "good/001": {"score": 0.3, "invariant": 0.2},
        "logical_anomalies/000": {"score": 0.2, "invariant": 0.9},  # one good image ranks above it
        "logical_anomalies/001": {"score": 0.9, "invariant": 0.1},
        "structural_anomalies/000": {"score": 0.0, "invariant": 0.0},  # would lower both if it were counted
    }
    assert script.logical_auroc(scores, "score") == 0.75
    assert script.logical_auroc(scores, "invariant") == 0.5


def test_its_counts_are_the_held_out_guards(script):
    """The script explains the guard's figures only while it generates the guard's data."""
    guard = Path(__file__).resolve().parents[1] / "models" / "npgmf" / "test_heldout_guard.py"
    assignment = next(
        node
        for node in ast.parse(guard.read_text()).body
        if isinstance(node, ast.Assign) and node.targets[0].id == "SCENE"
    )
    scene = ast.literal_eval(assignment.value)
    assert {key: scene[key] for key in script.GUARD_COUNTS} == script.GUARD_COUNTS
