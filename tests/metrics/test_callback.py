"""The per-category LOCO table of a multi-category test run (PerCategoryLocoReport), fed like anomalib feeds it."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from anomalib_npgmf.data import anomaly_type_of, generate_demo_dataset, load_defect_regions
from anomalib_npgmf.metrics.callback import PerCategoryLocoReport

COUNTS = {"image_size": 64, "n_train": 2, "n_val": 1, "n_test_good": 3, "n_test_per_defect": 1}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("loco_categories")
    generate_demo_dataset(root, "cat_a", scene="box", seed=0, **COUNTS)
    generate_demo_dataset(root, "cat_b", scene="pins", seed=1, **COUNTS)
    return root


def _prediction(path, perfect: bool) -> tuple[float, torch.Tensor]:
    """Score and map that find every defect (``perfect``) or point exactly away from it."""
    regions = load_defect_regions(path) if anomaly_type_of(path) != "good" else []
    mask = np.zeros((64, 64), bool)
    for region in regions:
        mask |= region.mask
    anomalous = float(bool(regions))
    if perfect:
        return anomalous, torch.from_numpy(mask.astype(np.float32))
    return 1.0 - anomalous, torch.from_numpy((~mask).astype(np.float32))


def test_per_category_loco_table_and_mean(root, tmp_path, capsys):
    paths = sorted(str(p) for p in root.glob("cat_*/test/*/*.png"))
    callback = PerCategoryLocoReport(["cat_b", "cat_a"], lambda path: path.split("/")[-4])
    trainer = SimpleNamespace(world_size=1, global_rank=0, default_root_dir=str(tmp_path))
    callback.on_test_epoch_start(trainer, None)
    for start in range(0, len(paths), 5):  # batches mixing both categories
        chunk = paths[start : start + 5]
        scores, maps = zip(*(_prediction(p, perfect="cat_a" in p) for p in chunk), strict=True)
        outputs = SimpleNamespace(image_path=chunk, pred_score=torch.tensor(scores), anomaly_map=torch.stack(maps))
        callback.on_test_batch_end(trainer, None, outputs, None, 0)
    callback.on_test_epoch_end(trainer, None)
    table = json.loads((tmp_path / "loco_report_per_category.json").read_text())["table"]
    assert list(table) == ["cat_a", "cat_b", "mean"]
    for kind in ("logical", "structural", "mean"):
        assert table["cat_a"][kind]["image_AUROC"] == 1.0  # a spread between categories first...
        assert table["cat_b"][kind]["image_AUROC"] == 0.0
        assert table["cat_a"][kind]["AU-sPRO"] == pytest.approx(1.0)
        assert table["cat_b"][kind]["AU-sPRO"] < 0.05
        for column in ("image_AUROC", "AU-sPRO"):  # ...then the mean over categories
            expected = (table["cat_a"][kind][column] + table["cat_b"][kind][column]) / 2
            assert table["mean"][kind][column] == pytest.approx(expected)
    csv_lines = (tmp_path / "loco_report_per_category.csv").read_text().splitlines()
    assert csv_lines[0] == "category,anomalies,image_AUROC,AU-sPRO"
    assert len(csv_lines) == 1 + 3 * 3
    out = capsys.readouterr().out
    assert "MVTec LOCO results per category" in out
    assert "| cat_a | 1.0000 |" in out


def test_a_category_without_one_anomaly_type_gets_nan_cells_left_out_of_the_mean(root, tmp_path):
    paths = sorted(
        str(p) for p in root.glob("cat_*/test/*/*.png") if "structural" not in p.parent.name or "cat_a" in str(p)
    )
    callback = PerCategoryLocoReport(["cat_a", "cat_b"], lambda path: path.split("/")[-4])
    trainer = SimpleNamespace(world_size=1, global_rank=0, default_root_dir=str(tmp_path))
    callback.on_test_epoch_start(trainer, None)
    scores, maps = zip(*(_prediction(p, perfect=True) for p in paths), strict=True)
    outputs = SimpleNamespace(image_path=paths, pred_score=torch.tensor(scores), anomaly_map=torch.stack(maps))
    callback.on_test_batch_end(trainer, None, outputs, None, 0)
    callback.on_test_epoch_end(trainer, None)
    table = callback.table
    assert np.isnan(table["cat_b"]["structural"]["image_AUROC"])
    assert np.isnan(table["cat_b"]["structural"]["AU-sPRO"])
    assert table["mean"]["structural"]["image_AUROC"] == table["cat_a"]["structural"]["image_AUROC"] == 1.0
