"""Npgmf through anomalib's Engine: train -> test -> export (torch/onnx/openvino) -> predict, and reload."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from anomalib.deploy import TorchInferencer

from anomalib_npgmf import Npgmf
from anomalib_npgmf.models.common import MissingWeightsError


def _test_images(run, limit: int = 12) -> tuple[list[Path], torch.Tensor]:
    from anomalib.data.utils import read_image

    paths = sorted((run.dataset_root / run.category / "test").rglob("*.png"))[::3][:limit]
    images = torch.stack([read_image(path, as_tensor=True) for path in paths])
    return paths, images


def test_training_fits_prior_and_normalisation(trained_npgmf):
    model = trained_npgmf.model.model
    assert bool(model.prior.ready)
    # unit-normalised in float32: 1 to a few ulps (1.2e-7), inside allclose's rtol 1e-5
    assert torch.allclose(model.prior.text_embedding.norm(dim=-1), torch.ones(1))
    assert bool(model.logical_norm.fitted) and bool(model.structural_norm.fitted)
    assert float(model.logical_norm.q_high) > float(model.logical_norm.q_low)
    assert trained_npgmf.checkpoint.is_file()
    assert 0.0 <= trained_npgmf.test_metrics["image_AUROC"] <= 1.0


def test_anomalib_test_wrote_the_loco_table_into_the_run_folder(trained_npgmf):
    report = Path(trained_npgmf.engine.trainer.default_root_dir) / "loco_report.json"
    table = json.loads(report.read_text())["table"]
    assert set(table) == {"logical", "structural", "mean"}
    assert all(0.0 <= value <= 1.0 for row in table.values() for value in row.values())


def test_eval_score_is_the_map_maximum_plus_the_image_level_prior_and_post_processing_keeps_its_order(
    trained_npgmf,
):
    _, images = _test_images(trained_npgmf)
    model = trained_npgmf.model.eval()
    with torch.no_grad():
        result = model(images)
        inputs = model.pre_processor(images)
        raw = model.model(inputs)
        levels = model.model.encoder(inputs)[:-1]
        image_level = model.model.fuse({"global": model.model.global_prior(levels)})
    assert torch.isfinite(result.pred_score).all()
    assert result.anomaly_map.shape[-2:] == (64, 64)
    # global_in_map=False: the map holds what localises, the global prior's image-level part is added to its maximum
    expected = raw.anomaly_map.flatten(1).amax(dim=1) + image_level
    assert expected.unique().numel() > 1
    # the same float32 numbers added once on both paths; 1e-6 allows a different reduction order inside amax/fuse
    assert torch.allclose(raw.pred_score, expected, rtol=1e-6, atol=1e-6), (raw.pred_score, expected)
    # anomalib's post-processing is monotone: ranking by score must not contradict ranking by raw score (ties allowed:
    # the post-processor clips)
    post_processed = result.pred_score.reshape(-1)[torch.argsort(raw.pred_score)]
    assert (post_processed.diff() >= 0).all(), (raw.pred_score, result.pred_score)


def test_checkpoint_reloads_with_weights_only_and_gives_the_same_scores(trained_npgmf):
    _, images = _test_images(trained_npgmf)
    reloaded = Npgmf.load_from_checkpoint(trained_npgmf.checkpoint).eval()
    with torch.no_grad():
        expected = trained_npgmf.model.eval()(images).pred_score
        actual = reloaded(images).pred_score
    # bit-identical weights after the weights-only reload, same process: only kernel dispatch may differ (<8 ulps)
    assert torch.allclose(actual, expected, atol=1e-6)
    saved = torch.load(trained_npgmf.checkpoint, map_location="cpu", weights_only=True)
    assert saved["anomalib_npgmf_version"]


def test_new_process_predict_gives_the_same_scores(trained_npgmf):
    paths, images = _test_images(trained_npgmf, limit=4)
    with torch.no_grad():
        expected = trained_npgmf.model.eval()(images).pred_score.tolist()
    code = (
        "import json, sys, torch\n"
        "from anomalib.data.utils import read_image\n"
        "from anomalib.models import get_model\n"
        "from anomalib_npgmf import Npgmf\n"
        f"model = Npgmf.load_from_checkpoint({str(trained_npgmf.checkpoint)!r}).eval()\n"
        f"images = torch.stack([read_image(p, as_tensor=True) for p in {[str(p) for p in paths]!r}])\n"
        "print(json.dumps(model(images).pred_score.tolist()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # another process may block its float32 convolutions differently: ~1e-7 per op; scores <= ~1, so 1e-6
    assert json.loads(result.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("export_type", ["torch", "onnx", "openvino"])
def test_export_and_predict_match_torch_eager(trained_npgmf, tmp_path, export_type, monkeypatch):
    # anomalib's TorchInferencer unpickles the whole module and refuses to unless the user opts in.
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    _, images = _test_images(trained_npgmf)
    model = trained_npgmf.model.eval()
    with torch.no_grad():
        expected = model(images)
    path = trained_npgmf.engine.export(model, export_type=export_type, export_root=tmp_path)
    assert path is not None and Path(path).is_file()
    if export_type == "torch":
        inferencer = TorchInferencer(path=path, device="cpu")
        scores = np.array([float(inferencer.predict(image).pred_score) for image in images])
        assert np.abs(scores - expected.pred_score.numpy()).max() <= 1e-5
        return
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = [next(iter(output.names)) for output in compiled.outputs]
    outputs = dict(zip(names, compiled(images.numpy()).to_tuple(), strict=True))
    assert np.abs(outputs["pred_score"] - expected.pred_score.numpy()).max() <= 1e-4
    assert np.abs(outputs["anomaly_map"] - expected.anomaly_map.numpy()).max() <= 1e-4


def test_openvino_inferencer_predicts_with_the_export(trained_npgmf, tmp_path, monkeypatch):
    from anomalib.deploy import OpenVINOInferencer

    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes an openvino_cache folder into the working directory
    paths, _ = _test_images(trained_npgmf, limit=2)
    path = trained_npgmf.engine.export(trained_npgmf.model, export_type="openvino", export_root=tmp_path)
    inferencer = OpenVINOInferencer(path, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    prediction = inferencer.predict(paths[0])
    assert np.isfinite(prediction.pred_score).all()
    assert prediction.anomaly_map.shape[-2:] == (64, 64)


def test_pretrained_offline_fails_at_once_naming_each_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ANOMALIB_NPGMF_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match="clip_weights"):
        Npgmf(backbone="resnet18", pre_trained=True, image_size=64)
    fake_clip = tmp_path / "clip.bin"
    fake_clip.write_bytes(b"x")
    with pytest.raises(MissingWeightsError, match=r"backbone_weights.*resnet18\.safetensors"):
        Npgmf(backbone="resnet18", pre_trained=True, clip_weights=str(fake_clip), image_size=64)


def test_missing_category_is_a_clear_error(tiny_npgmf_kwargs):
    model = Npgmf(**tiny_npgmf_kwargs)
    with pytest.raises(ValueError, match="category"):
        model._ensure_prior()


def test_bad_image_size_is_named(tiny_npgmf_kwargs):
    with pytest.raises(ValueError, match="image_size"):
        Npgmf(**{**tiny_npgmf_kwargs, "image_size": (16, 16)})


def test_anomalib_cli_test_from_checkpoint_in_a_new_process(trained_npgmf, tiny_npgmf_kwargs):
    anomalib = str(Path(sys.executable).parent / "anomalib")
    arguments = [
        anomalib,
        "test",
        "--model",
        "Npgmf",
        *[
            f"--model.{key}={json.dumps(list(value)) if isinstance(value, tuple) else value}"
            for key, value in tiny_npgmf_kwargs.items()
        ],
        "--data",
        "anomalib_npgmf.data.MVTecLOCORegions",
        "--data.root",
        str(trained_npgmf.dataset_root),
        "--data.category",
        trained_npgmf.category,
        "--data.num_workers",
        "0",
        "--data.eval_batch_size",
        "8",
        "--ckpt_path",
        str(trained_npgmf.checkpoint),
        "--default_root_dir",
        str(trained_npgmf.output / "cli"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.logger",
        "false",
    ]
    result = subprocess.run(
        arguments, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = f"{trained_npgmf.test_metrics['image_AUROC']:.4f}"[:5]
    assert "image_AUROC" in result.stdout
    assert expected in result.stdout, result.stdout[-3000:]


def test_anomalib_cli_predict_from_checkpoint_in_a_new_process(trained_npgmf, tiny_npgmf_kwargs, tmp_path):
    anomalib = str(Path(sys.executable).parent / "anomalib")
    images = trained_npgmf.dataset_root / trained_npgmf.category / "test" / "structural_anomalies"
    arguments = [
        anomalib,
        "predict",
        "--model",
        "Npgmf",
        *[
            f"--model.{key}={json.dumps(list(value)) if isinstance(value, tuple) else value}"
            for key, value in tiny_npgmf_kwargs.items()
        ],
        "--ckpt_path",
        str(trained_npgmf.checkpoint),
        "--data",
        str(images),
        "--default_root_dir",
        str(tmp_path),
        "--trainer.accelerator",
        "cpu",
        "--trainer.logger",
        "false",
    ]
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    written = list(tmp_path.rglob("*.png"))
    assert len(written) == len(list(images.glob("*.png")))


def test_nan_input_is_refused_with_the_image_named(tiny_npgmf_kwargs):
    from anomalib.data import ImageBatch

    model = Npgmf(**tiny_npgmf_kwargs)
    images = torch.zeros(2, 3, 64, 64)
    images[1, 0, 3, 3] = float("nan")
    batch = ImageBatch(image=images, image_path=["a.png", "b.png"])
    with pytest.raises(ValueError, match=r"NaN or Inf pixel values: b\.png"):
        model.test_step(batch, 0)


def test_any_image_size_works_even_if_not_a_multiple_of_the_stride(tiny_npgmf_kwargs):
    model = Npgmf(**{**tiny_npgmf_kwargs, "image_size": (72, 100)}).eval()
    with torch.no_grad():
        result = model(torch.rand(1, 3, 90, 130))
    assert result.anomaly_map.shape[-2:] == (72, 100)
    assert torch.isfinite(result.pred_score).all()


def test_int8_export_scope_keeps_everything_but_the_frozen_encoder_in_fp32(tmp_path, tiny_npgmf_kwargs):
    """The encoder's convolutions are found in the OpenVINO graph by structure; all else is kept FP32."""
    import openvino as ov

    from anomalib_npgmf import Npgmf
    from anomalib_npgmf.models.common.export import frozen_encoder_convolutions

    model = Npgmf(**tiny_npgmf_kwargs, category="demo_box").eval()
    graph = ov.Core().read_model(model.to_openvino(tmp_path))
    shapes = [tuple(m.weight.shape) for m in model.model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    encoder = frozen_encoder_convolutions(graph, shapes)
    assert len(encoder) == len(shapes) == 20  # resnet18: stem, 16 block convolutions, 3 downsamples
    convolutions = {op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() == "Convolution"}
    assert encoder < convolutions  # decoders, bottleneck and blur convolutions are not the encoder's
    scope = model.int8_ignored_scope(graph)
    assert encoder.isdisjoint(scope.names) and convolutions - encoder <= set(scope.names)
    assert frozen_encoder_convolutions(graph, [*shapes, (7, 7, 7, 7)]) == set()  # not all found: none claimed


def test_a_blur_that_cannot_run_is_refused_by_name():
    from .conftest import TINY_NPGMF

    with pytest.raises(ValueError, match="blur_sigma must be > 0"):
        Npgmf(**TINY_NPGMF, blur_sigma=0.0)
    with pytest.raises(ValueError, match=r"blur_sigma=16.0 needs a 129 px kernel, too large for input size \(64, 64\)"):
        Npgmf(**TINY_NPGMF, blur_sigma=16.0)
