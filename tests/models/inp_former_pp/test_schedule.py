"""Warm-up + cosine per optimiser step, pinned against the official WarmCosineScheduler's array."""

import io
import itertools

import numpy as np
import pytest
import torch

from anomalib_npgmf.models.inp_former_pp.components.schedule import WarmCosineLR, effective_warmup, warm_cosine_lr

BASE, FINAL, WARMUP, TOTAL = 1e-3, 1e-4, 100, 1000


def official_schedule(base: float, final: float, warmup: int, total: int) -> np.ndarray:
    """utils.WarmCosineScheduler.schedule of the official code."""
    warm = np.linspace(0, base, warmup)
    iters = np.arange(total - warmup)
    return np.concatenate((warm, final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))))


@pytest.mark.parametrize("step", [0, 1, 50, 99, 100, 101, 550, TOTAL - 1])
def test_lr_matches_the_official_array(step):
    expected = official_schedule(BASE, FINAL, WARMUP, TOTAL)[step]
    # Python float64 on both sides, one cos() each: agreement to ~1e-16 relative
    assert warm_cosine_lr(step, BASE, FINAL, WARMUP, TOTAL) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_lr_at_chosen_steps_by_hand():
    assert warm_cosine_lr(0, BASE, FINAL, WARMUP, TOTAL) == 0.0
    # approx() without a tolerance below: float64 schedule values against closed forms (rounding ~1e-16)
    assert warm_cosine_lr(50, BASE, FINAL, WARMUP, TOTAL) == pytest.approx(1e-3 * 50 / 99)
    assert warm_cosine_lr(100, BASE, FINAL, WARMUP, TOTAL) == pytest.approx(1e-3)  # cosine starts at the peak
    assert warm_cosine_lr(550, BASE, FINAL, WARMUP, TOTAL) == pytest.approx(5.5e-4)  # half-way down the cosine
    assert warm_cosine_lr(TOTAL, BASE, FINAL, WARMUP, TOTAL) == pytest.approx(1e-4)  # end
    assert warm_cosine_lr(TOTAL + 7, BASE, FINAL, WARMUP, TOTAL) == pytest.approx(1e-4)


def test_short_runs_warm_up_over_half_the_run_instead_of_never_decaying():
    assert effective_warmup(100, 1000) == 100
    assert effective_warmup(100, 100) == 50
    assert effective_warmup(100, 9) == 4
    lrs = [warm_cosine_lr(step, BASE, FINAL, 100, 9) for step in range(9)]
    assert lrs[0] == 0.0 and lrs[3] == pytest.approx(BASE) and lrs[4] == pytest.approx(BASE)
    assert lrs[-1] < lrs[4] and all(a >= b for a, b in itertools.pairwise(lrs[4:]))


def test_scheduler_sets_the_lr_of_each_step_and_saves_plain_numbers():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=123.0)
    scheduler = WarmCosineLR(optimizer, BASE, FINAL, WARMUP, TOTAL)
    reference = official_schedule(BASE, FINAL, WARMUP, TOTAL)
    seen = []
    for _ in range(TOTAL):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # torch's scheduler multiplies the base LR by our float64 factor: one extra rounding (~1e-16 relative)
    assert np.allclose(seen, reference, rtol=1e-12, atol=1e-15)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(FINAL)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["last_epoch"] == TOTAL and state["warmup_steps"] == WARMUP
