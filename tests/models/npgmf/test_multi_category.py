"""One Npgmf for several categories: each image conditioned on its own category, routed by itself at inference."""

import pytest
import torch

from anomalib_npgmf import Npgmf
from anomalib_npgmf.models.npgmf.components import GlobalNormalityPrior

CATEGORIES = ["demo_box", "demo_pins"]
SMALL = {"image_size": 64, "n_train": 12, "n_val": 4, "n_test_good": 4, "n_test_per_defect": 1}


@pytest.fixture(scope="module")
def two_categories(tmp_path_factory):
    from anomalib_npgmf.data import generate_demo_dataset

    root = tmp_path_factory.mktemp("npgmf_multi")
    generate_demo_dataset(root, "demo_box", scene="box", seed=0, **SMALL)
    generate_demo_dataset(root, "demo_pins", scene="pins", seed=1, **SMALL)
    return root


def _datamodule(root, categories=CATEGORIES):
    from anomalib_npgmf.data import MultiCategory

    return MultiCategory(root=root, categories=categories, train_batch_size=8, eval_batch_size=16, num_workers=0)


@pytest.fixture(scope="module")
def trained(two_categories, tmp_path_factory, request):
    from anomalib.engine import Engine

    from .conftest import TINY_NPGMF

    torch.manual_seed(0)
    model = Npgmf(**{**TINY_NPGMF, "categories": CATEGORIES})
    datamodule = _datamodule(two_categories)
    engine = Engine(
        max_epochs=1, accelerator="cpu", devices=1, default_root_dir=tmp_path_factory.mktemp("run"), logger=False
    )
    engine.fit(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule)[0]
    return model, datamodule, metrics, engine


def test_each_category_has_its_text_prior_and_gaussians(trained):
    model, *_ = trained
    embedding = model.model.prior.text_embedding
    # not allclose (rtol 1e-5): two categories' text priors differ by O(0.1), rounding by ~1e-7
    assert embedding.shape[0] == 2 and not torch.allclose(embedding[0], embedding[1])
    assert model.model.global_prior.mean.shape[0] == 2 and bool(model.model.global_prior.fitted)
    assert model.model.patch_prior.mean.shape[0] == 2 and bool(model.model.patch_prior.fitted)
    assert not torch.allclose(model.model.global_prior.mean[0], model.model.global_prior.mean[1])


def test_test_run_reports_each_category_and_the_mean(trained):
    _, _, metrics, _ = trained
    for name in [*CATEGORIES, "mean"]:
        assert 0.0 <= metrics[f"image_AUROC/{name}"] <= 1.0


def test_images_are_routed_to_their_own_category_without_a_label(trained):
    model, datamodule, *_ = trained
    model.eval()
    routed, truth = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            levels = model.model.encoder(model.pre_processor.transform(batch.image))[:-1]
            routed += GlobalNormalityPrior.route(model.model.global_prior.distances(levels)).tolist()
            truth += model.category_indices(batch.image_path).tolist()
    agreement = sum(r == t for r, t in zip(routed, truth, strict=True)) / len(truth)
    assert agreement >= 0.95, agreement
    # eval scores come from the routed category: giving the true labels changes (almost) nothing
    batch = next(iter(datamodule.test_dataloader()))
    images = model.pre_processor.transform(batch.image)
    with torch.no_grad():
        unlabelled = model.model.fuse(model.model.raw_maps(images))
        labelled = model.model.fuse(model.model.raw_maps(images, model.category_indices(batch.image_path)))
    # routed to the true category, the same float32 ops run on the same Gaussian: isclose's rtol 1e-5 is ~100 ulps
    same = torch.isclose(unlabelled.amax(dim=(-3, -2, -1)), labelled.amax(dim=(-3, -2, -1)))
    assert same.float().mean() >= 0.95


def test_category_lists_must_agree_and_be_clear(two_categories, tmp_path):
    from anomalib.engine import Engine

    from .conftest import TINY_NPGMF

    with pytest.raises(ValueError, match=r"either category= .* or categories="):
        Npgmf(**{**TINY_NPGMF, "category": "x", "categories": CATEGORIES})
    with pytest.raises(ValueError, match="distinct"):
        Npgmf(**{**TINY_NPGMF, "categories": ["a", "a"]})
    # without the global prior a routing-only Gaussian routes (test_variants.py checks it routes right)
    assert Npgmf(**{**TINY_NPGMF, "categories": CATEGORIES, "use_global_prior": False}).model.router is not None
    model = Npgmf(**{**TINY_NPGMF, "categories": ["demo_pins", "demo_box"]})
    engine = Engine(max_epochs=1, accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="built for categories"):
        engine.fit(model, datamodule=_datamodule(two_categories))


# The exported graphs route by themselves as torch does: the parity matrix's multiclass cases compare OpenVINO with
# torch on both categories (tests/models/common/test_export_parity.py).
