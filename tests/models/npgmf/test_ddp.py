"""DDP on 2 CPU processes (gloo) gives the same Npgmf as one process, up to float noise."""

import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).with_name("ddp_train.py")


def _train(root: Path, devices: int, out: Path) -> dict[str, torch.Tensor]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), "--devices", str(devices), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(out, weights_only=True)


def test_two_process_ddp_matches_one_process(demo_dataset, tmp_path):
    root, _ = demo_dataset
    single = _train(root, 1, tmp_path / "single.pt")
    ddp = _train(root, 2, tmp_path / "ddp.pt")
    assert single.keys() == ddp.keys()
    worst = {}
    for key, value in single.items():
        if value.is_floating_point():
            worst[key] = float((value - ddp[key]).abs().max() / (value.abs().max() + 1e-6))
        else:
            assert torch.equal(value, ddp[key]), key
    offenders = {k: v for k, v in worst.items() if v > 1e-3}
    assert not offenders, sorted(offenders.items(), key=lambda kv: -kv[1])[:10]
    # the statistics that DDP must reduce are really there and really equal
    for key in ("model.logical_norm.q_high", "model.structural_norm.q_high", "model.logical.quantizer.codes"):
        assert key in single and worst[key] <= 1e-3
    assert bool(single["model.logical_norm.fitted"])
