"""``variant="paper"`` (the default) is the paper's model; ``variant="plus"`` adds ours; every addition is a switch."""

import pytest
import torch
from anomalib.data import ImageBatch

from anomalib_npgmf import Npgmf

from .conftest import TINY_NPGMF

PAPER_TINY = {key: value for key, value in TINY_NPGMF.items() if key != "variant"}


def test_the_default_is_the_papers_model():
    model = Npgmf(**PAPER_TINY).model
    assert model.logical is not None and model.structural is not None  # M_LAD and M_SAD
    assert model.logical.quantizer is not None and model.logical.prior is not None  # codebooks and AGC
    assert model.global_prior is None and model.patch_prior is None  # no priors of ours
    assert not model.logical.raw_embedding  # the decoder sees the multi-semantic features instead of the bottleneck


def test_plus_adds_ours_and_each_addition_is_its_own_switch():
    plus = Npgmf(**PAPER_TINY, variant="plus").model
    assert plus.global_prior is not None and plus.patch_prior is not None and plus.logical.raw_embedding
    only_patch = Npgmf(**PAPER_TINY, use_patch_prior=True).model
    assert only_patch.patch_prior is not None and only_patch.global_prior is None
    plus_without_raw = Npgmf(**PAPER_TINY, variant="plus", raw_embedding=False).model
    assert not plus_without_raw.logical.raw_embedding and plus_without_raw.global_prior is not None


def test_the_fusion_input_width_follows_the_raw_embedding_switch():
    channels = PAPER_TINY["bottleneck_channels"]
    prior = PAPER_TINY["prior_channels"]
    assert Npgmf(**PAPER_TINY).model.logical.fuse.in_channels == channels + prior
    assert Npgmf(**PAPER_TINY, raw_embedding=True).model.logical.fuse.in_channels == 2 * channels + prior


def test_without_codebooks_the_raw_embedding_is_kept():
    # nothing else would carry the image to M_LAD's decoder
    assert Npgmf(**{**PAPER_TINY, "codebook_size": 0}).model.logical.raw_embedding


def test_an_unknown_variant_is_named():
    with pytest.raises(ValueError, match="variant must be one of"):
        Npgmf(**PAPER_TINY, variant="paper+")


def test_a_paper_model_of_several_categories_routes_without_the_global_prior():
    torch.manual_seed(0)
    model = Npgmf(**PAPER_TINY, categories=["cat_a", "cat_b"])
    assert model.model.global_prior is None and model.model.router is not None
    # two categories whose images differ in brightness; paths name the category as MultiCategory's layout does
    images = torch.cat([torch.full((4, 3, 64, 64), 0.2), torch.full((4, 3, 64, 64), 0.8)])
    images = images + 0.05 * torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    paths = [f"/data/cat_a/train/good/{i}.png" for i in range(4)] + [
        f"/data/cat_b/train/good/{i}.png" for i in range(4)
    ]
    batch = ImageBatch(image=images, gt_label=torch.zeros(8, dtype=torch.long), image_path=paths)
    model.fit_priors([batch])
    assert bool(model.model.router.fitted)
    with torch.no_grad():
        levels = model.model.encoder(model.pre_processor.transform(images))[:-1]
        routes = model.model.router.route(model.model.router.distances(levels))
    assert routes.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_the_global_prior_enters_the_image_score_alone_or_through_the_map_with_the_same_score():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(10, 3, 64, 64, generator=generator)
    paths = [f"/data/cat/train/good/{i}.png" for i in range(6)]
    batch = ImageBatch(image=images[:6], gt_label=torch.zeros(6, dtype=torch.long), image_path=paths)
    outputs = {}
    for in_map in (False, True):
        torch.manual_seed(0)
        model = Npgmf(**PAPER_TINY, variant="plus", global_in_map=in_map, category="cat")
        model._ensure_prior()
        model.fit_priors([batch])
        model.fit_normalization([[batch]])
        model.eval()
        with torch.no_grad():
            outputs[in_map] = model.model(model.pre_processor(images[6:]))
    alone, spread = outputs[False], outputs[True]
    assert alone.pred_score.std() > 0
    # max(m + c) = max(m) + c: the same score, to float32 rounding of one add (scores ~1, so 1e-5)
    assert torch.allclose(alone.pred_score, spread.pred_score, atol=1e-5)
    offset = (spread.anomaly_map - alone.anomaly_map).flatten(1)
    # the spread map is the localising map plus one image-level constant (blurred constant: flat to float rounding)
    assert float(offset.std(dim=1).max()) < 1e-4 * float(offset.abs().max())
    assert float(offset.abs().max()) > 0
