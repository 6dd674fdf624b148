"""Per-category AUROC table: hand-computed AUROCs, the mean row, category names from paths."""

import math

import pytest
import torch

from anomalib_npgmf.metrics.per_category import category_from_path, per_category_auroc


def test_table_has_one_auroc_per_category_and_their_mean():
    categories = ["b", "b", "b", "b", "a", "a", "a", "c", "c"]
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.3, 0.5, 0.6])
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 1, 1, 1])
    table = per_category_auroc(categories, scores, labels).set_index("category")
    # a: normal 0.9 vs anomalous 0.2, 0.3 -> 0 of 2 pairs ordered; b: pairs (0.35 > 0.1, 0.35 < 0.4, 0.8 > both) = 3/4
    # approx() without a tolerance: AUROCs of a few hand-made scores, exact ratios of small integers
    assert table.loc["a", "image_AUROC"] == pytest.approx(0.0)
    assert table.loc["b", "image_AUROC"] == pytest.approx(0.75)
    assert math.isnan(table.loc["c", "image_AUROC"])  # no normal image: undefined, left out of the mean
    assert table.loc["mean", "image_AUROC"] == pytest.approx(0.375)
    assert table.loc["b", "n_normal"] == 2 and table.loc["mean", "n_anomalous"] == 6
    assert list(table.index) == ["a", "b", "c", "mean"]


def test_category_is_the_folder_above_the_split():
    assert category_from_path("/data/MVTec/bottle/test/broken_large/000.png") == "bottle"
    assert category_from_path("root/demo_box/test/good/003.png") == "demo_box"
    with pytest.raises(ValueError, match="category"):
        category_from_path("/somewhere/image.png")
