"""Fixtures shared by the tests of both models."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

DDP_SCRIPT = Path(__file__).with_name("ddp_train.py")


def _train_in_subprocess(model: str, root: Path, devices: int, out: Path, category: str = "demo_box") -> dict:
    """Run ``ddp_train.py`` (1 process, or DDP on ``devices`` CPU processes) and load the state it saved."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    command = [sys.executable, str(DDP_SCRIPT), "--model", model, "--root", str(root), "--devices", str(devices)]
    command += ["--out", str(out), "--category", category]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(out, weights_only=True)


def relative_differences(single: dict[str, torch.Tensor], ddp: dict[str, torch.Tensor]) -> dict[str, float]:
    """Worst relative difference per floating-point tensor; integer tensors must be equal."""
    assert single.keys() == ddp.keys()
    worst = {}
    for key, value in single.items():
        if value.is_floating_point():
            worst[key] = float((value - ddp[key]).abs().max() / (value.abs().max() + 1e-6))
        else:
            assert torch.equal(value, ddp[key]), key
    return worst


@pytest.fixture
def train_ddp() -> Callable[..., dict]:
    """``train_ddp(model, root, devices, out)``: one epoch of a tiny model, 1 process or DDP; its final state."""
    return _train_in_subprocess
