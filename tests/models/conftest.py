"""Fixtures shared by the tests of both models."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

DDP_SCRIPT = Path(__file__).with_name("ddp_train.py")
# The small Npgmf of the fitting, calibration and DDP tests (ddp_train.py, a script, loads this file by path).
FIT_NPGMF = {
    "variant": "plus",  # the priors and the raw embedding are exercised here; the paper variant has its own tests
    "backbone": "resnet18",
    "pre_trained": False,
    "image_size": 64,
    "bottleneck_channels": 32,
    "oce_strides": (1, 1),
    "codebook_size": 16,
    "num_codebooks": 2,
    "prior_channels": 8,
    "use_invariant_prior": True,  # off in both variants, on here so that DDP and calibration cover it
    "choose_invariant_weight": True,  # likewise (its pseudo-anomalies' distances are gathered over ranks)
    "use_region_prior": True,  # likewise
    "use_part_prior": True,  # likewise (its k-means and Gaussian read parts gathered over ranks)
    "choose_part_weight": True,  # likewise (chosen from the same gathered pseudo-anomaly rows)
    "part_in_map": True,  # likewise (its territories read kind maps gathered over ranks)
    "calibrated_local_score": True,  # likewise (its quantiles are of maxima gathered over ranks)
    "visualizer": False,
}


@pytest.fixture
def fit_npgmf() -> dict:
    """A copy of :data:`FIT_NPGMF` (no category: add ``category=`` or ``categories=``)."""
    return dict(FIT_NPGMF)


# DDP equivalence: why a 2-rank run and a 1-rank run differ at all, and how much they may.
#
# Both see the same 8 images per step, so their gradients are equal in exact arithmetic. In floating point they are
# not: one process reduces the batch of 8 in one kernel, DDP reduces 4 + 4 per rank and gloo sums the two halves, a
# different summation order that rounds differently (~1 unit roundoff relative to the gradient). Adam then divides
# every element by its own running RMS: where the exact gradient is ~0 (biases and weight directions in front of a
# GroupNorm or a softmax, which are blind to a shared shift), the computed gradient is rounding noise, and Adam turns
# that noise into a step of size ~lr whose sign differs between the set-ups; later steps carry it into the other
# weights. Measured over one epoch in float32 (unit roundoff 2**-24): relative differences up to 2.7e-3
# (Npgmf, structural decoder) and 1.1e-3 (INP-Former++, extractor key bias), i.e. ~2e4 x float32's epsilon, and
# 1e-3 was passed on one CPU and failed on another.
#
# So the check runs both set-ups in float64, where the same rounding is 2**29 times smaller and Adam's eps (1e-8) sits
# far above the noise. Measured in float64 (2-core Xeon, torch CPU kernels): worst relative difference 2.2e-13 (Npgmf)
# and 5.5e-12 (INP-Former++, extractor.kv.bias). DDP_TOLERANCE = 1e-9 is ~180x the worst measured value (room for
# other CPUs' kernels; float32 moved by 2.7x between two CPUs) and 8 orders of magnitude below what a real DDP bug
# gives (a codebook EMA update or a loss statistic left per rank: 0.2-0.65, see the models' test_ddp.py).
DDP_TOLERANCE = 1e-9
# A relative difference is taken against the tensor's largest value, but never against less than one optimiser step
# (both tiny models use lr >= 1e-3): a weight that rounding noise alone moves from 0 must not divide noise by noise.
DDP_SCALE_FLOOR = 1e-3


def _train_in_subprocess(
    model: str,
    root: Path,
    devices: int,
    out: Path,
    category: str = "demo_box",
    precision: str = "64-true",
    local_reduction: str | None = None,
) -> dict:
    """Run ``ddp_train.py`` (1 process, or DDP on ``devices`` CPU processes) and load the state it saved.

    ``local_reduction`` names a module whose ``all_reduce_sum`` is made a no-op: a deliberate DDP bug.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    command = [sys.executable, str(DDP_SCRIPT), "--model", model, "--root", str(root), "--devices", str(devices)]
    command += ["--out", str(out), "--category", category, "--precision", precision]
    if local_reduction:
        command += ["--local-reduction", local_reduction]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(out, weights_only=True)


def relative_differences(single: dict[str, torch.Tensor], ddp: dict[str, torch.Tensor]) -> dict[str, float]:
    """Worst relative difference per floating-point tensor (see ``DDP_SCALE_FLOOR``); integer tensors must be equal."""
    assert single.keys() == ddp.keys()
    worst = {}
    for key, value in single.items():
        if value.is_floating_point():
            scale = max(float(value.abs().max()), DDP_SCALE_FLOOR)
            worst[key] = float((value.double() - ddp[key].double()).abs().max()) / scale
        else:
            assert torch.equal(value, ddp[key]), key
    return worst


@pytest.fixture
def train_ddp() -> Callable[..., dict]:
    """``train_ddp(model, root, devices, out, ...)``: one epoch of a tiny model, 1 process or DDP; its final state."""
    return _train_in_subprocess
