"""Faults: a killed ``anomalib fit`` resumes with ``--ckpt_path``; a killed writer never leaves half a checkpoint.

Slow by nature (two CLI processes); the SIGKILL run is in the default suite, the SIGTERM kill-and-resume one is marked
slow. The SIGTERM exit code (143) has its own fast test.
"""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from anomalib_npgmf.models.common import AtomicCheckpointIO

from .conftest import CATEGORY, TINY_NPGMF, subprocess_environment

MAX_EPOCHS = 6


def _fit_command(root: Path, output: Path, ckpt_path: Path | None = None, max_epochs: int = MAX_EPOCHS) -> list[str]:
    anomalib = str(Path(sys.executable).parent / "anomalib")
    command = [anomalib, "fit", "--model", "Npgmf"]
    command += [
        f"--model.{key}={list(value) if isinstance(value, tuple) else value}" for key, value in TINY_NPGMF.items()
    ]
    command += ["--data", "anomalib_npgmf.data.MVTecLOCORegions", "--data.root", str(root), "--data.category", CATEGORY]
    command += ["--data.num_workers", "0", "--data.train_batch_size", "4", "--data.eval_batch_size", "4"]
    command += ["--trainer.max_epochs", str(max_epochs), "--trainer.logger", "false", "--seed_everything", "0"]
    command += ["--trainer.enable_progress_bar", "false", "--default_root_dir", str(output)]
    if ckpt_path is not None:
        command += ["--ckpt_path", str(ckpt_path)]
    return command


def _checkpoints(output: Path) -> list[Path]:
    return sorted(path for path in output.rglob("*") if path.is_file() and ".ckpt" in path.name)


def _is_temporary_checkpoint(name: str) -> bool:
    """``AtomicCheckpointIO``'s temporary file (``.model.ckpt.<random>.partial``), renamed into place once complete."""
    return name.startswith(".model.ckpt.") and name.endswith(".partial")


def test_temporary_checkpoint_names_are_told_from_checkpoints():
    """The leftover check above must reject a half-written checkpoint under its final name."""
    assert _is_temporary_checkpoint(".model.ckpt.x1y2.partial")
    assert not _is_temporary_checkpoint("model.ckpt")
    assert not _is_temporary_checkpoint("model-v1.ckpt")


@pytest.mark.parametrize(
    "kill_signal", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)], ids=["SIGKILL", "SIGTERM"]
)
def test_killed_training_leaves_a_valid_checkpoint_and_resumes_to_the_end(pristine_dataset, tmp_path, kill_signal):
    first = tmp_path / "first"
    process = subprocess.Popen(
        _fit_command(pristine_dataset, first),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_environment(),
    )
    deadline = time.monotonic() + 240
    try:
        while not any(path.name == "model.ckpt" for path in _checkpoints(first)):
            assert process.poll() is None, (
                f"training ended before the first checkpoint: {process.stderr.read()[-3000:]}"
            )
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        process.send_signal(kill_signal)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Stopped, not finished: SIGKILL -> -9; SIGTERM -> Lightning stops at the next step, our callback makes it 143.
    assert process.returncode == (-signal.SIGKILL if kill_signal == signal.SIGKILL else 128 + signal.SIGTERM)
    # Whatever the kill interrupted: every checkpoint file is complete, and no half-written .ckpt is left. A write the
    # kill cut short may leave its temporary file (the next save removes it); nothing else may be there.
    files = _checkpoints(first)
    complete = [path for path in files if path.name.endswith(".ckpt")]
    assert [path.name for path in complete] == ["model.ckpt"], files
    leftovers = [path.name for path in files if path not in complete]
    assert all(_is_temporary_checkpoint(name) for name in leftovers), leftovers
    saved = torch.load(complete[0], map_location="cpu", weights_only=True)
    interrupted_epoch = saved["epoch"]
    assert interrupted_epoch < MAX_EPOCHS - 1, "the kill came too late to test resuming"

    second = tmp_path / "second"
    resumed = subprocess.run(
        _fit_command(pristine_dataset, second, ckpt_path=complete[0]),
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_environment(),
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = [path for path in _checkpoints(second) if path.name == "model.ckpt"]
    assert len(final) == 1
    finished = torch.load(final[0], map_location="cpu", weights_only=True)
    assert finished["epoch"] == MAX_EPOCHS - 1
    assert finished["global_step"] > saved["global_step"]
    assert finished["anomalib_npgmf_version"]


def test_sigterm_stops_anomalib_fit_with_exit_code_143(pristine_dataset, tmp_path):
    """README: a SIGTERM-stopped ``anomalib fit`` exits 143, not 0 as anomalib's does (fast: no resume here)."""
    output = tmp_path / "run"
    with (tmp_path / "stderr.txt").open("w") as stderr:  # a file, not a pipe: a full pipe would block the run
        process = subprocess.Popen(
            _fit_command(pristine_dataset, output, max_epochs=10_000),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=subprocess_environment(),
        )
        deadline = time.monotonic() + 240
        try:
            # the first checkpoint: training runs, so Lightning's SIGTERM handler is in place
            while not any(path.name == "model.ckpt" for path in _checkpoints(output)):
                assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint within 240 s"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 128 + signal.SIGTERM, (tmp_path / "stderr.txt").read_text()[-3000:]


WRITER = textwrap.dedent(
    """
    import sys, torch
    from anomalib_npgmf.models.common import AtomicCheckpointIO
    writer, target = AtomicCheckpointIO(), sys.argv[1]
    version = 0
    while True:
        version += 1
        writer.save_checkpoint({"version": version, "payload": torch.full((2_000_000,), float(version))}, target)
        print(version, flush=True)
    """
)


def test_a_writer_killed_at_random_moments_never_leaves_a_corrupt_checkpoint(tmp_path):
    target = tmp_path / "model.ckpt"
    delays = [0.05, 0.13, 0.21, 0.34]
    for delay in delays:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=subprocess_environment()
        )
        first_line = process.stdout.readline()  # at least one complete write before the kill
        assert first_line.strip().isdigit(), first_line
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
        checkpoint = torch.load(target, weights_only=True)
        assert torch.equal(checkpoint["payload"], torch.full((2_000_000,), float(checkpoint["version"])))
    leftovers = [path.name for path in tmp_path.iterdir() if path != target]
    assert all(_is_temporary_checkpoint(name) for name in leftovers), leftovers
    time.sleep(0.05)  # the next save removes earlier saves' leftovers
    AtomicCheckpointIO().save_checkpoint({"version": 0, "payload": torch.zeros(1)}, target)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.ckpt"]
