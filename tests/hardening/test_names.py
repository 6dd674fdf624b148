"""Names: unicode category names end to end, and a misspelt model name on anomalib's own CLI."""

import math
import subprocess
import sys
from pathlib import Path

import torch

from anomalib_npgmf import Npgmf
from anomalib_npgmf.models.npgmf.components import encode_category_names

from .conftest import checkpoint_of, subprocess_environment, tiny_datamodule, tiny_engine, tiny_model

UNICODE_CATEGORY = "café_盒子 ü"


def test_unicode_category_trains_tests_reports_and_reloads(dataset_copy, tmp_path):
    root = dataset_copy(UNICODE_CATEGORY)
    model = tiny_model("Npgmf", prior_channels=8)  # with the CLIP text prior: the name reaches the tokenizer
    engine = tiny_engine(tmp_path / "run")
    datamodule = tiny_datamodule(root, UNICODE_CATEGORY)
    engine.fit(model, datamodule=datamodule)
    expected = encode_category_names([UNICODE_CATEGORY], "ViT-B-32", None)
    # the same text tower on the same prompt: equal up to float32 op order, inside allclose's rtol 1e-5
    assert torch.allclose(model.model.prior.text_embedding, expected)
    assert not torch.allclose(expected, encode_category_names(["demo_box"], "ViT-B-32", None))
    metrics = engine.test(model, datamodule=datamodule)[0]
    assert math.isfinite(metrics["image_AUROC"])
    reports = list((tmp_path / "run").rglob("loco_report.json"))
    assert reports and UNICODE_CATEGORY in str(reports[0])
    reloaded = Npgmf.load_from_checkpoint(checkpoint_of(engine), map_location="cpu")
    assert torch.equal(reloaded.model.prior.text_embedding, model.model.prior.text_embedding)


def test_misspelt_model_name_on_anomalib_cli_exits_2_naming_it(pristine_dataset, tmp_path):
    anomalib = str(Path(sys.executable).parent / "anomalib")
    command = [anomalib, "fit", "--model", "Npgmff", "--data", "anomalib_npgmf.data.MVTecLOCORegions"]
    command += ["--data.root", str(pristine_dataset), "--default_root_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=subprocess_environment())
    assert result.returncode == 2
    assert 'error: Parser key "model"' in result.stderr and "Given value: Npgmff" in result.stderr
    assert "--model 'Npgmff' is not a known model; did you mean 'Npgmf'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was started
