"""Every shipped config parses with anomalib's own CLI (dry run: --print_config builds no model)."""

import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
ANOMALIB = str(Path(sys.executable).parent / "anomalib")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses_with_anomalib_train(config: Path):
    result = subprocess.run(
        [ANOMALIB, "train", "--config", str(config), "--print_config"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "class_path: anomalib_npgmf" in result.stdout


def test_there_are_configs_for_each_model():
    assert any(p.parent.name == "npgmf" and p.name == "mvtec_loco.yaml" for p in CONFIGS)
    assert any(p.parent.name == "npgmf" and p.name == "demo_cpu.yaml" for p in CONFIGS)
    for name in ("demo_cpu", "mvtec_loco", "mvtec_ad_multiclass", "mvtec_loco_multiclass", "visa_multiclass"):
        assert any(p.parent.name == "inp_former_pp" and p.stem == name for p in CONFIGS), name
