"""``benchmarks/accuracy/heatmap_grid.py``: one row per defect kind, its ground truth, maps on shared column scales."""

import json

import numpy as np
import pytest
from PIL import Image

from anomalib_npgmf.data import generate_demo_dataset
from anomalib_npgmf.deploy import heat_overlay, image_pixels

from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("heatmap_grid")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """An accuracy ``--output`` folder's data part: ``data/demo_box`` with one test image per defect kind."""
    folder = tmp_path_factory.mktemp("run")
    counts = {"n_train": 4, "n_val": 2, "n_test_good": 2, "n_test_per_defect": 1}
    generate_demo_dataset(folder / "data", "demo_box", image_size=64, seed=0, **counts)
    return folder


def test_one_row_per_defect_kind_and_one_good(script, run_folder):
    rows = script.first_of_each_kind(run_folder, "demo_box")
    kinds = json.loads((run_folder / "data" / "demo_box" / "defect_types.json").read_text())
    assert set(rows) == {"good", *kinds.values()}
    assert rows["good"].parent.name == "good"
    for kind, path in rows.items():
        assert path.is_file()
        if kind != "good":
            assert kinds[f"test/{path.parent.name}/{path.stem}"] == kind


def test_ground_truth_marks_the_defect_and_nothing_on_a_good_image(script, run_folder):
    rows = script.first_of_each_kind(run_folder, "demo_box")
    assert script.ground_truth(rows["good"]).max() == 0
    scratch = script.ground_truth(rows["scratch"])
    assert 0 < scratch.mean() < 0.5  # a region, not the whole image


def test_grid_has_a_tile_per_row_and_column_on_one_scale_per_column(script, run_folder):
    rows = dict(list(script.first_of_each_kind(run_folder, "demo_box").items())[:2])
    maps = {"fused (output)": np.stack([np.full((64, 64), 0.5), np.ones((64, 64))]).astype(np.float32)}
    grid = np.asarray(script.render(rows, maps)).astype(float)
    tile, label = script.TILE, script.LABEL_HEIGHT
    assert grid.shape == ((tile + label) * 2 + label, tile * 3, 3)

    def expected(path, heat):
        image = Image.fromarray(image_pixels(path))
        overlay = heat_overlay(image, np.full((64, 64), heat, dtype=np.float32), Image.BILINEAR)
        return np.asarray(overlay.convert("RGB").resize((tile, tile))).astype(float)

    first = grid[2 * label : 2 * label + tile, 2 * tile :]
    # shared scale: the half-strength row shows half heat; a per-row min-max rescale would show it at 0 or 1
    assert np.abs(first - expected(rows["good"], 0.5)).max() <= 1
    assert np.abs(first - expected(rows["good"], 1.0)).mean() > 10
