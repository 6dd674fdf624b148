"""The shared walk over an accuracy run's saved checkpoints (``benchmarking/saved_runs.py``)."""

import argparse
import json

from anomalib_npgmf.benchmarking import saved_runs


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
