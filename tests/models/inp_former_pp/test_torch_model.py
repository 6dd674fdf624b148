"""Shapes and structure of the torch model in training and eval, for both variants."""

import pytest
import torch
from anomalib.data import InferenceBatch

from anomalib_npgmf.models.inp_former_pp import InpFormerPlusPlusModel
from anomalib_npgmf.models.inp_former_pp.torch_model import halves

TINY = {"depth": 4, "embed_dim": 32, "num_heads": 2, "img_size": 28}


def _model(**kwargs) -> InpFormerPlusPlusModel:
    torch.manual_seed(0)
    return InpFormerPlusPlusModel(pre_trained=False, backbone_kwargs=TINY, score_size=None, **kwargs)


def test_groups_split_the_features_in_consecutive_halves():
    assert halves(8) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert halves(5, 2) == [[0, 1], [2, 3, 4]]
    with pytest.raises(ValueError, match="groups"):
        halves(2, 3)


def test_training_outputs_have_the_shapes_the_losses_need():
    model = _model().train()
    outputs = model(torch.randn(2, 3, 56, 56))
    assert len(model.decoder) == 8 and len(outputs["encoder_groups"]) == 2
    assert all(group.shape == (2, 32, 4, 4) for group in outputs["encoder_groups"] + outputs["decoder_groups"])
    assert outputs["fused_tokens"].shape == (2, 16, 32)
    assert outputs["inps"].shape == (2, 6, 32)
    assert outputs["residual_logits"].shape == (2, 1, 4, 4) == outputs["residual_target"].shape
    assert not outputs["encoder_groups"][0].requires_grad and outputs["decoder_groups"][0].requires_grad


def test_eval_returns_an_inference_batch_at_the_input_size():
    model = _model().eval()
    with torch.no_grad():
        result = model(torch.randn(3, 3, 56, 70))
    assert isinstance(result, InferenceBatch)
    assert result.pred_score.shape == (3,)
    assert result.anomaly_map.shape == (3, 1, 56, 70)
    assert torch.isfinite(result.anomaly_map).all()


def test_plain_inp_former_has_no_residual_head_and_its_map_is_the_cosine_map():
    model = _model(residual_learning=False).eval()
    assert model.residual_head is None
    assert "residual_logits" not in model.train()(torch.randn(1, 3, 56, 56))
    model.eval()
    with torch.no_grad():
        layer_tokens, grid = model.encoder(torch.randn(1, 3, 56, 56))
        encoder_groups, decoder_groups, _, _ = model.reconstruct(layer_tokens, grid)
        token_map = model.token_map(encoder_groups, decoder_groups)
    cosine = [1 - torch.cosine_similarity(e, d, dim=1) for e, d in zip(encoder_groups, decoder_groups, strict=True)]
    # a float32 mean of two cosine maps (values <= 2) in another order: a few ulps (2.4e-7 each)
    assert torch.allclose(token_map[:, 0], (cosine[0] + cosine[1]) / 2, atol=1e-6)


def test_residual_map_weight_adds_the_heads_probability():
    model = _model(residual_map_weight=0.5).eval()
    with torch.no_grad():
        layer_tokens, grid = model.encoder(torch.randn(1, 3, 56, 56))
        encoder_groups, decoder_groups, _, _ = model.reconstruct(layer_tokens, grid)
        with_head = model.token_map(encoder_groups, decoder_groups)
        model.residual_map_weight = 0.0
        without = model.token_map(encoder_groups, decoder_groups)
    difference = (with_head - without) / 0.5
    assert float(difference.min()) > 0.0 and float(difference.max()) < 1.0  # a sigmoid probability


def test_only_the_decoder_side_is_trainable():
    model = _model()
    trainable = {id(p) for module in model.trainable_modules() for p in module.parameters()}
    assert not any(id(p) in trainable for p in model.encoder.parameters())
    assert {id(p) for p in model.residual_head.parameters()} <= trainable
