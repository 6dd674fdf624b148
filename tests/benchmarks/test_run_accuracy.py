"""The accuracy harness runs end to end on a tiny budget and writes its tables."""

import csv
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy" / "run_accuracy.py"


def _harness():
    spec = importlib.util.spec_from_file_location("run_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_mean_and_spread(tmp_path):
    harness = _harness()
    assert (
        harness.main(
            [
                "--output",
                str(tmp_path),
                "--small",
                "--seeds",
                "0",
                "1",
                "--epochs",
                "1",
                "--image-size",
                "64",
                "--models",
                "npgmf",
                "padim",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [(r["model"], r["seed"]) for r in rows] == [("npgmf", "0"), ("npgmf", "1"), ("padim", "0"), ("padim", "1")]
    for row in rows:
        for metric in ("logical_AUROC", "structural_AUROC", "logical_AU-sPRO", "structural_AU-sPRO"):
            assert 0.0 <= float(row[metric]) <= 1.0
    summary = (tmp_path / "accuracy.md").read_text()
    assert "| npgmf | 2 |" in summary
    assert "±" in summary
