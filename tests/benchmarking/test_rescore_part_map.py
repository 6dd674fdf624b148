"""``benchmarks/accuracy/rescore_part_map.py``: a run rescored with the part map gives what fitting it with the map
gives, weight 0 gives the run as trained, and the image scores never move."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.metrics.loco import LocoResults

from ..models.npgmf.conftest import TINY_NPGMF, fitted_tiny_npgmf
from .conftest import load_accuracy_script

PART = {"use_part_prior": True, "part_kinds": 2}


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("rescore_part_map")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from anomalib_npgmf.data import generate_demo_dataset

    # enough normals that the part kinds' spreads and the map's normal quantiles are not those of a dozen images (on
    # the benchmark's 12 / 4 the map stayed below its own 0.9 quantile on every test image: nothing to compare)
    root = tmp_path_factory.mktemp("rescore_part_map")
    sizes = {"n_train": 48, "n_val": 16, "n_test_good": 8, "n_test_per_defect": 2}
    generate_demo_dataset(root / "data", "demo_box", image_size=64, seed=0, **sizes)
    return root


def _fitted_on(root: Path, **overrides: object) -> object:
    """A tiny Npgmf fitted as a training run fits it: priors on the training normals, normalisation on the
    validation normals (same seed every call, so two calls differ only by ``overrides``)."""
    from anomalib_npgmf import Npgmf
    from anomalib_npgmf.benchmarking.data import loco_datamodule

    torch.manual_seed(0)
    model = Npgmf(**{**TINY_NPGMF, **overrides}, category="demo_box", visualizer=False)
    datamodule = loco_datamodule(root / "data", "demo_box")
    datamodule.setup("fit")
    model.eval()
    model.fit_priors(datamodule.train_dataloader())
    model.fit_normalization(saved_runs.calibration_loaders(root, "demo_box"))
    return model.eval()


def test_a_weight_rescored_equals_fitting_with_the_part_map(script, data_root: Path):
    from anomalib_npgmf.benchmarking.data import loco_datamodule

    arguments = argparse.Namespace(weights=[0.0, 16.0], floors=None, by_kind=True, kind_scaled=False)
    figures = script.rescore(_fitted_on(data_root, **PART), data_root, "demo_box", arguments)
    datamodule = loco_datamodule(data_root / "data", "demo_box")
    datamodule.setup("test")
    built = saved_runs.map_figures(_fitted_on(data_root, **PART, part_in_map=True, part_map_weight=16.0), datamodule)
    trained = saved_runs.map_figures(_fitted_on(data_root, **PART), datamodule)
    # the vector spread is rebuilt from the stored float32 precision, not the float64 covariance: values move by
    # ~1e-7 relative, which reorders only pixels that close; 1e-3 covers that, the map's effect is >= 1e-2 here
    for name in ("pixel AUROC", "structural AU-sPRO", "logical AU-sPRO"):
        assert figures["16"][name] == pytest.approx(built[name], abs=1e-3), name
        assert figures["0"][name] == pytest.approx(trained[name], abs=1e-9), name
    assert abs(figures["16"]["pixel AUROC"] - figures["0"]["pixel AUROC"]) > 1e-2  # the map reaches the figures
    for name in ("logical image_AUROC", "structural image_AUROC"):  # the image score never reads the map
        assert figures["16"][name] == figures["0"][name] == trained[name]
    assert any(name.startswith("pixels ") for name in figures["16"])
    # each kind's AU-sPRO is the LOCO table's structural AU-sPRO of that kind's images with the good ones (at 16: at 0
    # the tiny model's map finds no region below its good images' 5 % false positives, so every kind reads 0)
    with_map = _fitted_on(data_root, **PART, part_in_map=True, part_map_weight=16.0)
    scored = saved_runs.score_test_set(with_map, datamodule)
    kinds = script.defect_kinds(data_root, "demo_box")
    names = [kinds.get(f"{Path(path).parent.name}/{Path(path).stem}", "good") for path in scored.results.image_paths]
    structural = {name for name, kind in zip(names, scored.kinds, strict=True) if kind == "structural"}
    assert structural
    per_kind = []
    for kind in sorted(structural):
        subset = LocoResults()
        # the logical images only let the table build: its structural AU-sPRO reads good and structural images
        chosen = [i for i, name in enumerate(names) if name in ("good", kind) or scored.kinds[i] == "logical"]
        subset.add(
            [scored.results.image_paths[i] for i in chosen],
            np.asarray([scored.results.scores[i] for i in chosen]),
            np.stack([scored.results.maps[i] for i in chosen]),
        )
        expected = subset.table()["structural"]["AU-sPRO"]
        assert figures["16"][f"AU-sPRO {kind}"] == pytest.approx(expected, abs=1e-3), kind  # 1e-3: as above
        per_kind.append(expected)
    assert max(per_kind) > min(per_kind)  # the kinds differ, so a mix-up of kinds would show


def test_a_run_without_the_part_prior_is_named(script, tmp_path: Path):
    model, arguments = (
        fitted_tiny_npgmf(),
        argparse.Namespace(weights=[1.0], floors=None, by_kind=False, kind_scaled=False),
    )
    with pytest.raises(ValueError, match="has no part prior"):
        script.rescore(model, tmp_path, "demo_box", arguments)


def test_a_floor_rescored_equals_fitting_with_that_floor(script, data_root: Path):
    """``--floors``: each floor's figures are those of the model built with that ``part_map_floor`` (the floor is
    applied at fusion only, so nothing is refitted), keyed "<weight> floor <floor>"."""
    from anomalib_npgmf.benchmarking.data import loco_datamodule

    arguments = argparse.Namespace(weights=[16.0], floors=[0.0, 0.1], by_kind=False, kind_scaled=False)
    figures = script.rescore(_fitted_on(data_root, **PART), data_root, "demo_box", arguments)
    assert set(figures) == {"16 floor 0", "16 floor 0.1"}
    datamodule = loco_datamodule(data_root / "data", "demo_box")
    datamodule.setup("test")
    for floor in (0.0, 0.1):
        built = _fitted_on(data_root, **PART, part_in_map=True, part_map_weight=16.0, part_map_floor=floor)
        expected = saved_runs.map_figures(built, datamodule)
        for name in ("pixel AUROC", "structural AU-sPRO", "logical AU-sPRO"):  # 1e-3: as in the first test
            assert figures[f"16 floor {floor:g}"][name] == pytest.approx(expected[name], abs=1e-3), (floor, name)
    assert abs(figures["16 floor 0.1"]["pixel AUROC"] - figures["16 floor 0"]["pixel AUROC"]) > 1e-2  # it moves


def test_kind_scaled_rescoring_equals_fitting_with_it(script, data_root: Path):
    """``--kind-scaled``: the figures are those of the model built with ``part_map_kind_scaled`` (its per-kind distance
    scale fitted with the territory on the training normals), and they differ from the plain map's."""
    from anomalib_npgmf.benchmarking.data import loco_datamodule

    arguments = argparse.Namespace(weights=[16.0], floors=None, by_kind=False, kind_scaled=True)
    figures = script.rescore(_fitted_on(data_root, **PART), data_root, "demo_box", arguments)["16"]
    datamodule = loco_datamodule(data_root / "data", "demo_box")
    datamodule.setup("test")
    settings = {**PART, "part_in_map": True, "part_map_weight": 16.0}
    expected = saved_runs.map_figures(_fitted_on(data_root, **settings, part_map_kind_scaled=True), datamodule)
    plain = saved_runs.map_figures(_fitted_on(data_root, **settings), datamodule)
    for name in ("pixel AUROC", "structural AU-sPRO", "logical AU-sPRO"):  # 1e-3: as in the first test
        assert figures[name] == pytest.approx(expected[name], abs=1e-3), name
    assert max(abs(expected[name] - plain[name]) for name in ("pixel AUROC", "logical AU-sPRO")) > 1e-2  # it moves
