"""Unified multi-class training with a per-category table, and few-shot training (N normal images per category)."""

import math

import pytest
import torch

from anomalib_npgmf.models.inp_former_pp import InpFormerPlusPlus

from .conftest import TINY_MODEL

CATEGORIES = ["demo_box", "demo_pins"]


def _multi_category(root, n_shots: int | None = None) -> object:
    from anomalib_npgmf.data import MultiCategory

    return MultiCategory(
        root=root,
        categories=CATEGORIES,
        n_shots=n_shots,
        train_batch_size=4,
        eval_batch_size=8,
        num_workers=0,
        seed=0,
    )


def test_one_model_for_two_categories_reports_each_and_the_mean(generated_categories, tmp_path):
    from anomalib.engine import Engine

    torch.manual_seed(0)
    model = InpFormerPlusPlus(**TINY_MODEL)
    datamodule = _multi_category(generated_categories)
    engine = Engine(max_epochs=1, accelerator="cpu", devices=1, default_root_dir=tmp_path, logger=False)
    engine.fit(model, datamodule=datamodule)
    assert engine.trainer.global_step == 8  # 2 x 16 training images, batch 4: one model saw both categories
    metrics = engine.test(model, datamodule=datamodule)[0]
    per_category = [metrics[f"image_AUROC/{c}"] for c in CATEGORIES]
    assert all(0.0 <= value <= 1.0 for value in per_category)
    # a mean of two AUROCs logged as float32: 1 ulp at 1.0 = 1.2e-7
    assert metrics["image_AUROC/mean"] == pytest.approx(sum(per_category) / 2, abs=1e-6)
    callback = next(cb for cb in engine.trainer.callbacks if type(cb).__name__ == "PerCategoryImageAUROC")
    table = callback.table.set_index("category")
    assert list(table.index) == [*CATEGORIES, "mean"]
    assert table.loc["demo_box", "n_normal"] == 6 and table.loc["mean", "n_normal"] == 12


@pytest.mark.parametrize("shots", [1, 8])
def test_few_shot_training_on_n_images_per_category(generated_categories, tmp_path, shots):
    from anomalib.engine import Engine

    torch.manual_seed(0)
    model = InpFormerPlusPlus(**{**TINY_MODEL, "few_shot_augment": True})
    datamodule = _multi_category(generated_categories, n_shots=shots)
    engine = Engine(max_epochs=2, accelerator="cpu", devices=1, default_root_dir=tmp_path, logger=False)
    engine.fit(model, datamodule=datamodule)
    assert len(datamodule.train_data) == shots * len(CATEGORIES)
    assert engine.trainer.global_step == 2 * math.ceil(shots * len(CATEGORIES) / 4)  # 2 epochs, batch 4
    metrics = engine.test(model, datamodule=datamodule)[0]
    assert all(0.0 <= metrics[f"image_AUROC/{c}"] <= 1.0 for c in CATEGORIES)
