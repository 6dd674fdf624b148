import pytest
import torch
from anomalib.data import InferenceBatch

from anomalib_npgmf.models.npgmf import NpgmfModel
from anomalib_npgmf.models.npgmf.loss import NpgmfLoss


@pytest.fixture(scope="module")
def model() -> NpgmfModel:
    torch.manual_seed(0)
    return NpgmfModel(
        input_size=(64, 64),
        backbone="resnet18",
        pre_trained=False,
        bottleneck_channels=32,
        oce_strides=(1, 1),
        codebook_size=16,
        num_codebooks=2,
        prior_channels=8,
        text_dim=16,
    )


def test_training_outputs_match_the_encoder_levels(model):
    model.train()
    outputs = model(torch.randn(2, 3, 64, 64))
    for teacher, name in ((outputs["teacher"], "teacher"), (outputs["logical"], "logical")):
        assert len(teacher) == 3, name
    for t, lad, sad in zip(outputs["teacher"], outputs["logical"], outputs["structural"], strict=True):
        assert t.shape == lad.shape == sad.shape
    assert not outputs["teacher"][0].requires_grad
    losses = NpgmfLoss()(outputs)
    assert set(losses) == {"loss", "loss_logical", "loss_structural", "loss_commitment"}
    losses["loss"].backward()
    assert model.logical.fuse.weight.grad is not None
    assert model.structural.decoder.heads[0].weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())


def test_encoder_stays_in_eval_mode(model):
    model.train()
    assert not model.encoder.model.training


def test_eval_returns_inference_batch_at_input_size(model):
    model.eval()
    result = model(torch.randn(3, 3, 64, 64))
    assert isinstance(result, InferenceBatch)
    assert result.anomaly_map.shape == (3, 1, 64, 64)
    assert result.pred_score.shape == (3,)
    assert torch.equal(result.pred_score, result.anomaly_map.amax(dim=(-3, -2, -1)))  # the same max, exactly


def test_fusion_is_the_weighted_sum_of_normalised_maps():
    model = NpgmfModel(
        (64, 64), "resnet18", False, bottleneck_channels=32, prior_channels=0, fusion_weights=(1.0, 2.0, 1.0, 4.0)
    )
    model.logical_norm.fit([torch.tensor([0.0, 1.0])])
    model.structural_norm.fit([torch.tensor([0.0, 2.0])])
    model.global_norm.fit([torch.tensor([0.0, 4.0])])
    model.patch_norm.fit([torch.tensor([0.0, 8.0])])
    raw = {
        "logical": torch.full((1, 1, 2, 2), 1.0),
        "structural": torch.full((1, 1, 2, 2), 2.0),
        "global": torch.full((1, 1, 2, 2), 3.0),
        "patch": torch.full((1, 1, 2, 2), 5.0),
    }
    expected = (
        0.125 * model.logical_norm(raw["logical"])
        + 0.25 * model.structural_norm(raw["structural"])
        + 0.125 * model.global_norm(raw["global"])
        + 0.5 * model.patch_norm(raw["patch"])
    )
    # a float32 weighted sum in another order: allclose's rtol 1e-5 is ~100 ulps
    assert torch.allclose(model.fuse(raw), expected)
    # three weights (older configs): the patch map gets the structural map's weight
    old = NpgmfModel((64, 64), "resnet18", False, bottleneck_channels=32, prior_channels=0, fusion_weights=(1, 2, 1))
    expected = {"logical": 1 / 6, "structural": 2 / 6, "global": 1 / 6, "patch": 2 / 6, "invariant": 4 / 6}
    expected["region"], expected["part"], expected["part_map"] = 3.0 / 6, 1.0 / 6, 8.0 / 6
    # the invariant, region and part priors' and the part map's weights: the same scale, not in the total
    assert old.fusion_weights == expected


def test_global_prior_map_is_constant_per_image_and_zero_before_fitting(model):
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    assert torch.equal(model.raw_maps(images)["global"], torch.zeros(2, 1, 64, 64))
    *levels, _ = model.encoder(torch.randn(6, 3, 64, 64))
    model.global_prior.fit(model.global_prior.descriptor(levels))
    global_map = model.raw_maps(images)["global"]
    assert (global_map > 0).all()
    assert torch.equal(global_map, global_map[:, :, :1, :1].expand_as(global_map))


def test_ablations_drop_the_parts():
    no_priors = NpgmfModel((64, 64), "resnet18", False, bottleneck_channels=32, codebook_size=0, prior_channels=0)
    assert no_priors.logical.quantizer is None and no_priors.prior is None
    only_structural = NpgmfModel((64, 64), "resnet18", False, bottleneck_channels=32, use_logical=False)
    only_structural.eval()
    assert only_structural.logical is None
    assert only_structural(torch.randn(1, 3, 64, 64)).anomaly_map.shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="use_logical"):
        NpgmfModel(
            (64, 64),
            "resnet18",
            False,
            use_logical=False,
            use_structural=False,
            use_global_prior=False,
            use_patch_prior=False,
        )
    assert NpgmfModel((64, 64), "resnet18", False, use_patch_prior=False).patch_prior is None
    with pytest.raises(ValueError, match="fusion_weights"):
        NpgmfModel((64, 64), "resnet18", False, fusion_weights=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="fusion_weights"):
        NpgmfModel((64, 64), "resnet18", False, fusion_weights=(1.0, 1.0))
