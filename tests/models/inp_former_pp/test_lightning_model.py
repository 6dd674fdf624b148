"""InpFormerPlusPlus through anomalib's Engine: fit -> test -> checkpoint -> export, LR per step, resolution by name.

Multi-class, few-shot and zero-shot runs are in ``test_settings.py``.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from lightning.pytorch import Callback

from anomalib_npgmf.models.common import MissingWeightsError
from anomalib_npgmf.models.inp_former_pp import InpFormerPlusPlus
from anomalib_npgmf.models.inp_former_pp.components.schedule import warm_cosine_lr

from .conftest import TINY_MODEL


class LearningRateRecorder(Callback):
    """Learning rate used by each optimiser step."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


@dataclass
class Run:
    model: InpFormerPlusPlus
    engine: object
    datamodule: object
    checkpoint: Path
    metrics: dict
    rates: list[float]
    total_steps: int


@pytest.fixture(scope="module")
def trained(generated_categories: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """1 epoch on one generated category (random-init tiny ViT, 56 px), then anomalib test."""
    from anomalib.engine import Engine

    from anomalib_npgmf.data import MVTecLOCORegions

    torch.manual_seed(0)
    model = InpFormerPlusPlus(**{**TINY_MODEL, "warmup_steps": 2})
    datamodule = MVTecLOCORegions(
        root=generated_categories, category="demo_box", train_batch_size=4, eval_batch_size=8, num_workers=0
    )
    recorder = LearningRateRecorder()
    output = tmp_path_factory.mktemp("inp_run")
    engine = Engine(
        max_epochs=1, accelerator="cpu", devices=1, default_root_dir=output, logger=False, callbacks=[recorder]
    )
    engine.fit(model, datamodule=datamodule)
    total_steps = int(engine.trainer.estimated_stepping_batches)
    checkpoint = Path(
        engine.trainer.checkpoint_callback.best_model_path or engine.trainer.checkpoint_callback.last_model_path
    )
    metrics = engine.test(model, datamodule=datamodule)[0]
    return Run(model, engine, datamodule, checkpoint, metrics, recorder.rates, total_steps)


def _test_images(generated_categories: Path, category: str = "demo_box", limit: int = 8) -> torch.Tensor:
    from anomalib.data.utils import read_image

    paths = sorted((generated_categories / category / "test").rglob("*.png"))[::2][:limit]
    return torch.stack([read_image(path, as_tensor=True) for path in paths])


def test_lr_is_stepped_per_iteration_with_warmup_and_cosine(trained):
    assert trained.total_steps == 4  # 16 images, batch 4, 1 epoch
    expected = [warm_cosine_lr(step, 1e-3, 1e-4, 2, trained.total_steps) for step in range(trained.total_steps)]
    # learning rates are Python floats from the same float64 formula: equal to ~1e-19 at lr ~ 1e-3
    assert trained.rates == pytest.approx(expected, abs=1e-12)
    # by hand: linspace(0, 1e-3, 2), then the cosine from 1e-3 half-way down to 1e-4 + 0.45e-3
    assert trained.rates == pytest.approx([0.0, 1e-3, 1e-3, 5.5e-4], abs=1e-12)


def test_fit_and_test_give_metrics_and_the_per_category_table(trained):
    metrics = trained.metrics
    assert 0.0 <= metrics["image_AUROC"] <= 1.0
    # one category: the per-category AUROC is anomalib's pooled AUROC
    # one category: the same AUROC by two code paths, logged as float32 (1 ulp at 1.0 = 1.2e-7)
    assert metrics["image_AUROC/demo_box"] == pytest.approx(metrics["image_AUROC"], abs=1e-6)
    assert metrics["image_AUROC/mean"] == pytest.approx(metrics["image_AUROC"], abs=1e-6)
    csv = Path(trained.engine.trainer.default_root_dir) / "per_category_image_auroc.csv"
    assert csv.is_file() and "demo_box" in csv.read_text()
    assert trained.engine.trainer.gradient_clip_val == 0.1


def test_eval_output_is_an_inference_batch_at_the_crop_size(trained, generated_categories):
    images = _test_images(generated_categories)
    with torch.no_grad():
        result = trained.model.eval()(images)
    assert result.pred_score.shape == (len(images),)
    assert result.anomaly_map.shape[-2:] == (56, 56)
    assert torch.isfinite(result.pred_score).all()


def test_checkpoint_reloads_with_weights_only_and_scores_the_same(trained, generated_categories):
    saved = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    assert saved["anomalib_npgmf_version"]
    assert saved["hyper_parameters"]["variant"] == "inp_former_pp"
    assert saved["lr_schedulers"][0]["last_epoch"] == trained.total_steps
    reloaded = InpFormerPlusPlus.load_from_checkpoint(trained.checkpoint).eval()
    images = _test_images(generated_categories)
    with torch.no_grad():
        expected = trained.model.eval()(images)
        actual = reloaded(images)
    # bit-identical weights after the weights-only reload, same process: only kernel dispatch may differ (<8 ulps)
    assert torch.allclose(actual.pred_score, expected.pred_score, atol=1e-6)
    assert torch.allclose(actual.anomaly_map, expected.anomaly_map, atol=1e-6)


def test_openvino_f32_matches_torch_eager_within_1e_4(trained, generated_categories, tmp_path):
    images = _test_images(generated_categories)
    model = trained.model.eval()
    with torch.no_grad():
        expected = model(images)
    path = trained.engine.export(model, export_type="openvino", export_root=tmp_path)
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = [next(iter(output.names)) for output in compiled.outputs]
    outputs = dict(zip(names, compiled(images.numpy()).to_tuple(), strict=True))
    assert np.abs(outputs["pred_score"] - expected.pred_score.numpy()).max() <= 1e-4
    assert np.abs(outputs["anomaly_map"] - expected.anomaly_map.numpy()).max() <= 1e-4


def test_pretrained_without_a_local_file_fails_at_construction(monkeypatch, tmp_path):
    monkeypatch.delenv("ANOMALIB_NPGMF_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match=r"backbone_weights.*vit_base_patch14_reg4_dinov2\.safetensors"):
        InpFormerPlusPlus()  # the defaults are the paper's: pre_trained=True, no file
    with pytest.raises(MissingWeightsError, match="Looked for"):
        InpFormerPlusPlus(backbone_weights=str(tmp_path / "missing.safetensors"))


def test_both_inp_formers_resolve_by_name_side_by_side():
    from anomalib.models import InpFormer, get_model, list_models
    from anomalib.models import _get_model_class_by_name as by_name

    assert by_name("InpFormerPlusPlus") is InpFormerPlusPlus
    assert by_name("inp_former_plus_plus") is InpFormerPlusPlus
    assert by_name("InpFormer") is InpFormer
    assert {"inp_former", "inp_former_plus_plus"} <= list_models()
    model = get_model("InpFormerPlusPlus", **{**TINY_MODEL, "variant": "inp_former"})
    assert isinstance(model, InpFormerPlusPlus) and model.model.residual_head is None and not model.soft_coherence


def test_bad_arguments_are_named(tiny_kwargs):
    with pytest.raises(ValueError, match="variant"):
        InpFormerPlusPlus(**{**tiny_kwargs, "variant": "inp_former_xx"})
    with pytest.raises(ValueError, match="crop_size"):
        InpFormerPlusPlus(**{**tiny_kwargs, "crop_size": 100})
    with pytest.raises(ValueError, match="multiple of the ViT patch size"):
        InpFormerPlusPlus(**{**tiny_kwargs, "crop_size": 50})


def test_nan_images_are_refused_naming_them(tiny_kwargs):
    from anomalib.data import ImageBatch

    model = InpFormerPlusPlus(**tiny_kwargs)
    image = torch.rand(2, 3, 56, 56)
    image[1, 0, 3, 3] = float("nan")
    batch = ImageBatch(image=image, image_path=["ok.png", "broken.png"])
    with pytest.raises(ValueError, match=r"broken\.png"):
        model.validation_step(batch)


def test_zero_shot_scores_a_category_the_model_never_saw(trained, generated_categories):
    """Trained on demo_box only; INPs come from each test image, so demo_pins can be scored as it is."""
    from anomalib_npgmf.data import MVTecLOCORegions

    unseen = MVTecLOCORegions(
        root=generated_categories, category="demo_pins", eval_batch_size=8, num_workers=0, loco_report=False
    )
    metrics = trained.engine.test(trained.model, datamodule=unseen)[0]
    assert 0.0 <= metrics["image_AUROC/demo_pins"] <= 1.0
    assert "image_AUROC/demo_box" not in metrics


def test_documented_zero_shot_command_runs_in_a_new_process(trained, generated_categories):
    """``anomalib test --ckpt_path <trained on demo_box> --data.category demo_pins`` (the README's command)."""
    import json
    import subprocess
    import sys

    anomalib = str(Path(sys.executable).parent / "anomalib")
    model_arguments = [
        f"--model.{key}={json.dumps(value) if isinstance(value, dict | bool) or value is None else value}"
        for key, value in TINY_MODEL.items()
    ]
    arguments = [
        anomalib,
        "test",
        "--model",
        "anomalib_npgmf.models.inp_former_pp.InpFormerPlusPlus",
        *model_arguments,
        "--data",
        "anomalib_npgmf.data.MVTecLOCORegions",
        f"--data.root={generated_categories}",
        "--data.category=demo_pins",
        "--data.num_workers=0",
        "--data.eval_batch_size=8",
        f"--ckpt_path={trained.checkpoint}",
        f"--default_root_dir={trained.checkpoint.parent / 'zero_shot_cli'}",
        "--trainer.accelerator=cpu",
        "--trainer.logger=false",
    ]
    environment = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image_AUROC/demo_pins" in result.stdout


def test_training_pseudo_anomalies_follow_the_pixels_not_the_paths(tiny_kwargs):
    """Seeds from image paths made training depend on the dataset's folder: the same images under other paths, or
    none, must give the same pseudo-anomalies and so the same loss; other images, other pseudo-anomalies."""
    from anomalib.data import ImageBatch

    model = InpFormerPlusPlus(**tiny_kwargs)
    assert model.model.residual_learning  # the ++ variant trains its residual head on pseudo-anomalies
    image = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    here = ImageBatch(image=image, image_path=["/data/a/0.png", "/data/a/1.png"])
    elsewhere = ImageBatch(image=image.clone(), image_path=["/tmp/copy/0.png", "/tmp/copy/1.png"])
    unnamed = ImageBatch(image=image.clone())
    other = ImageBatch(image=image.flip(-1), image_path=here.image_path)
    seeds = model._pseudo_seeds(here)
    assert seeds == model._pseudo_seeds(elsewhere) == model._pseudo_seeds(unnamed)
    assert len(set(seeds)) == 2 and not set(seeds) & set(model._pseudo_seeds(other))

    def loss(batch: ImageBatch, shift: int = 0) -> torch.Tensor:
        torch.manual_seed(0)  # any other randomness of the step (dropout) alike in every call
        pseudo_seeds = [seed + shift for seed in model._pseudo_seeds(batch)]
        return model.loss(model.model(batch.image, pseudo_seeds=pseudo_seeds))["loss"]

    model.train()
    torch.testing.assert_close(loss(here), loss(elsewhere), rtol=0, atol=0)
    assert not torch.equal(loss(here), loss(here, shift=1))  # the loss does read the pseudo-anomalies
