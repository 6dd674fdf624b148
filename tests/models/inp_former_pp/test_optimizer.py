"""The optimiser we use (anomalib's StableAdamW) does what the official StableAdamW does: pinned on one step."""

import math

import torch
from anomalib.models.image.dinomaly.components import StableAdamW


def test_one_step_matches_the_official_update_by_hand():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    grad = torch.tensor([0.3, -0.1, 2.0])
    lr, wd, beta1, beta2, eps = 1e-3, 1e-4, 0.9, 0.999, 1e-10
    optimizer = StableAdamW([weight], lr=lr, betas=(beta1, beta2), weight_decay=wd, amsgrad=True, eps=eps)
    weight.grad = grad.clone()
    optimizer.step()
    # Official step 1: decoupled decay, Adam moments, update RMS-clipped by max(1, rms(g / denom)).
    start = torch.tensor([1.0, -2.0, 0.5]) * (1 - lr * wd)
    exp_avg, exp_avg_sq = (1 - beta1) * grad, (1 - beta2) * grad**2
    denom = exp_avg_sq.sqrt() / math.sqrt(1 - beta2) + eps
    rms = float((grad / denom).norm() / math.sqrt(3))
    step = lr / (1 - beta1) / max(1.0, rms)
    # float32 weights ~1, a dozen float32 ops in another order: < 8 ulps (1e-6); the step itself is 1e-3
    assert torch.allclose(weight.detach(), start - step * exp_avg / denom, rtol=1e-6, atol=0.0)
