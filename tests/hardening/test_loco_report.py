"""The LOCO table of a test run comes from a callback someone asked for, never from the datamodule's ``setup()``.

Our models add the datamodule's ``test_report()`` in ``configure_callbacks``; anomalib's own models get it when the
config (or the command line) lists ``LocoReportCallback`` under ``trainer.callbacks``.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CATEGORY, subprocess_environment

REPORT_CALLBACK = "anomalib_npgmf.metrics.callback.LocoReportCallback"


def _train_padim(root: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    anomalib = str(Path(sys.executable).parent / "anomalib")
    command = [anomalib, "train", "--model", "Padim", "--model.pre_trained", "false"]
    command += ["--data", "anomalib_npgmf.data.MVTecLOCORegions", "--data.root", str(root)]
    command += ["--data.category", CATEGORY, "--data.num_workers", "0", "--default_root_dir", str(workdir), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=subprocess_environment())


@pytest.mark.parametrize("listed", [True, False], ids=["callback listed", "not listed"])
def test_anomalib_model_gets_the_loco_table_only_when_the_callback_is_listed(pristine_dataset, tmp_path, listed):
    extra = ["--trainer.callbacks", REPORT_CALLBACK] if listed else []
    result = _train_padim(pristine_dataset, tmp_path, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = list(tmp_path.rglob("loco_report.json"))
    assert bool(reports) == listed, f"LOCO report files: {reports}"
    assert ("MVTec LOCO results" in result.stdout) == listed
