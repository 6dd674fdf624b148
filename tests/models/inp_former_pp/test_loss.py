"""Loss formulas against hand-written references: soft mining (value and re-weighted gradient), coherence, BCE."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_npgmf.models.inp_former_pp.loss import (
    InpFormerLoss,
    balanced_bce,
    coherence_loss,
    soft_coherence_loss,
    soft_mining_loss,
)


def _official_soft_mining(encoder_groups, decoder_groups, power=3):
    """utils.global_cosine_hm_adaptive of the official code (hook-based)."""

    def modify_grad(grad, factor):
        return grad * factor.expand_as(grad)

    loss = 0
    for encoder, decoder in zip(encoder_groups, decoder_groups, strict=True):
        encoder = encoder.detach()
        with torch.no_grad():
            point = 1 - F.cosine_similarity(encoder, decoder).unsqueeze(1)
        factor = (point / point.mean()) ** power
        loss += torch.mean(
            1 - F.cosine_similarity(encoder.reshape(encoder.shape[0], -1), decoder.reshape(decoder.shape[0], -1))
        )
        decoder.register_hook(partial(modify_grad, factor=factor))
    return loss / len(encoder_groups)


def _groups(seed: int):
    generator = torch.Generator().manual_seed(seed)
    encoder = [torch.randn(2, 6, 3, 3, generator=generator) for _ in range(2)]
    leaves = [torch.randn(2, 6, 3, 3, generator=generator, requires_grad=True) for _ in range(2)]
    return encoder, leaves


def test_soft_mining_value_is_the_global_cosine_loss():
    encoder, leaves = _groups(0)
    value = soft_mining_loss(encoder, [leaf * 1.0 for leaf in leaves])
    by_hand = (
        sum(
            (1 - F.cosine_similarity(e.flatten(1), d.flatten(1), dim=1)).mean()
            for e, d in zip(encoder, leaves, strict=True)
        )
        / 2
    )
    # rel=1e-6 in this file: float32 losses against the formula written out, a few ulps (1.2e-7) apart
    assert float(value) == pytest.approx(float(by_hand), rel=1e-6)


def test_soft_mining_gradient_is_reweighted_like_the_official_hook():
    encoder, leaves = _groups(1)
    soft_mining_loss(encoder, [leaf * 1.0 for leaf in leaves]).backward()
    ours = [leaf.grad.clone() for leaf in leaves]
    encoder, leaves = _groups(1)
    _official_soft_mining(encoder, [leaf * 1.0 for leaf in leaves]).backward()
    for mine, official in zip(ours, [leaf.grad for leaf in leaves], strict=True):
        # the same float32 gradient re-weighting in another op order; gradients here are < 1e-2 (ulp ~1e-9)
        assert torch.allclose(mine, official, atol=1e-7)


def test_soft_mining_gradient_equals_weights_times_plain_gradient():
    encoder, leaves = _groups(2)
    soft_mining_loss(encoder[:1], [leaves[0] * 1.0], power=3).backward()
    weighted = leaves[0].grad.clone()
    leaves[0].grad = None
    soft_mining_loss(encoder[:1], [leaves[0] * 1.0], power=0).backward()
    plain = leaves[0].grad
    distance = 1 - F.cosine_similarity(encoder[0], leaves[0].detach(), dim=1).unsqueeze(1)
    weights = (distance / distance.mean()) ** 3
    # one float32 multiply on each side of gradients < 1e-2: identical up to ~1e-9
    assert torch.allclose(weighted, plain * weights, atol=1e-8)
    assert not torch.allclose(weighted, plain)


def test_coherence_loss_is_the_mean_distance_to_the_nearest_inp():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    inps = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    # distances to nearest INP: 0, 1 (orthogonal to both), 1 - 1/sqrt(2)
    expected = (0.0 + 1.0 + (1 - 2**-0.5)) / 3
    assert float(coherence_loss(tokens, inps)) == pytest.approx(expected, rel=1e-6)


def test_soft_coherence_weights_far_tokens_less_and_tends_to_the_hard_loss():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    inps = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]], requires_grad=True)
    distances = torch.tensor([0.0, 1.0, 1 - 2**-0.5])
    weights = torch.softmax(-(distances / distances.mean()) / 0.5, dim=0)
    expected = float((weights * distances).sum())
    assert float(soft_coherence_loss(tokens, inps, temperature=0.5)) == pytest.approx(expected, rel=1e-6)
    assert expected < float(coherence_loss(tokens, inps))
    assert float(soft_coherence_loss(tokens, inps, temperature=1e6)) == pytest.approx(
        float(coherence_loss(tokens, inps)), rel=1e-5
    )
    soft_coherence_loss(tokens, inps, temperature=0.5).backward()  # weights are constants: gradient exists, finite
    assert torch.isfinite(inps.grad).all()


def test_balanced_bce_counts_each_class_half():
    logits = torch.tensor([[[[2.0, -1.0, 0.0, 0.5]]]])
    target = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])
    positive = -F.logsigmoid(torch.tensor(2.0))
    negative = torch.stack([-F.logsigmoid(-torch.tensor(v)) for v in (-1.0, 0.0, 0.5)]).mean()
    assert float(balanced_bce(logits, target)) == pytest.approx(float((positive + negative) / 2), rel=1e-6)


def test_total_loss_weights():
    encoder, leaves = _groups(3)
    tokens, inps = torch.randn(2, 9, 6), torch.randn(2, 3, 6)
    outputs = {"encoder_groups": encoder, "decoder_groups": leaves, "fused_tokens": tokens, "inps": inps}
    hard = InpFormerLoss(coherence_weight=0.2, soft_coherence=False)(outputs)
    assert float(hard["loss"]) == pytest.approx(float(hard["reconstruction"] + 0.2 * hard["coherence"]), rel=1e-6)
    logits, target = torch.randn(2, 1, 3, 3), (torch.rand(2, 1, 3, 3) > 0.5).float()
    target[0, 0, 0, 0], target[0, 0, 0, 1] = 1.0, 0.0
    plus = InpFormerLoss(residual_loss_weight=0.5)({**outputs, "residual_logits": logits, "residual_target": target})
    expected = plus["reconstruction"] + 0.2 * plus["coherence"] + 0.5 * plus["residual"]
    assert float(plus["loss"]) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="coherence_temperature"):
        InpFormerLoss(coherence_temperature=0)
