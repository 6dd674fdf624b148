"""The shared walk over an accuracy run's saved checkpoints (``benchmarking/saved_runs.py``)."""

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf


def _arguments(argv: list[str], default_models: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    saved_runs.add_arguments(parser, default_models)
    return parser.parse_args(argv)


def test_a_category_without_a_saved_run_is_skipped_not_fatal(tmp_path):
    (tmp_path / "data" / "demo_box").mkdir(parents=True)
    (tmp_path / "runs" / "Npgmf_0").mkdir(parents=True)  # the model ran, but on another category
    arguments = _arguments([str(tmp_path), "--models", "npgmf", "probe_mean"])
    assert list(saved_runs.each_run(arguments)) == []


def test_defaults_and_json_output(tmp_path):
    arguments = _arguments([str(tmp_path), "--json", str(tmp_path / "f.json")], default_models=["Npgmf"])
    assert arguments.models == ["Npgmf"] and arguments.seed == 0 and arguments.image_size == 128
    saved_runs.write_json(arguments.json, {"Npgmf|demo_box|x": {"all": 0.5}})
    assert json.loads((tmp_path / "f.json").read_text()) == {"Npgmf|demo_box|x": {"all": 0.5}}
    saved_runs.write_json(None, {})  # no path: nothing written, no error


def test_score_test_set_scores_every_test_image_once_in_order(tmp_path: Path):
    from anomalib_npgmf.benchmarking.data import SMALL_DATA, loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", "demo_box", image_size=IMAGE_SIZE, seed=0, **SMALL_DATA)
    test_images = sorted(str(path) for path in (tmp_path / "data" / "demo_box" / "test").glob("*/*.png"))
    datamodule = loco_datamodule(tmp_path / "data", "demo_box")
    datamodule.setup("test")
    datamodule.eval_batch_size = 5  # several batches, one of them short: the concatenation is exercised
    model = fitted_tiny_npgmf()
    grad_modes = []

    def doubled(images: torch.Tensor) -> dict[str, torch.Tensor]:
        grad_modes.append(torch.is_grad_enabled())
        return {"doubled": 2 * model.model(images).anomaly_map}

    scored = saved_runs.score_test_set(model, datamodule, doubled)
    count = len(test_images)
    assert sorted(scored.results.image_paths) == test_images and count == 12
    assert Counter(scored.kinds) == {"good": 4, "logical": 5, "structural": 3}
    assert scored.maps.shape == scored.masks.shape == (count, IMAGE_SIZE * IMAGE_SIZE)
    assert torch.tensor(scored.results.scores).std() > 0  # real scores, not a constant
    good = torch.tensor([kind == "good" for kind in scored.kinds])
    assert not scored.masks[good].any() and scored.masks[~good].any(dim=1).all()
    torch.testing.assert_close(scored.extra_maps["doubled"], 2 * scored.maps, rtol=0, atol=0)
    assert grad_modes == [False] * 3  # three batches of 5, 5 and 2, without autograd
