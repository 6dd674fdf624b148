"""Start one measuring subprocess (:mod:`.child`) and read its result; a failure becomes an exception with its
last stderr line (the row's reason)."""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from anomalib_npgmf.utils import atomic_write_text

from .records import ChildResult, TimingSettings

CHILD_TIMEOUT_SECONDS = 1800


def run_child(runtime: str, artifact: Path, images: Path, settings: TimingSettings, folder: Path) -> ChildResult:
    """Measure ``runtime`` on the exported ``artifact`` in a fresh interpreter; its log is kept in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = folder / "spec.json", folder / "result.json"
    result_path.unlink(missing_ok=True)
    spec = {
        "runtime": runtime,
        "artifact": str(artifact),
        "images": str(images),
        "settings": asdict(settings),
        "result": str(result_path),
    }
    atomic_write_text(spec_path, json.dumps(spec))
    threads = str(settings.threads)
    environment = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    command = [sys.executable, "-m", "anomalib_npgmf.benchmarking.child", str(spec_path)]
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=CHILD_TIMEOUT_SECONDS, check=False
    )
    (folder / "child.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0 or not result_path.exists():
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        msg = f"subprocess exited with {completed.returncode}: {lines[-1] if lines else 'no output'}"
        raise RuntimeError(msg)
    return ChildResult(**json.loads(result_path.read_text()))
