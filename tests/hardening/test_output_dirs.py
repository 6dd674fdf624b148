"""Output folders that cannot be written: read-only, full, or not creatable.

Tests run as root on CI, where ``chmod`` cannot make a folder read-only, so read-only and full folders are simulated
at the OS boundary (``os.open`` / ``os.mkdir`` / ``os.write`` ... raise ``EACCES`` / ``ENOSPC`` below the folder);
a folder below a regular file is a real, uncreatable folder for any user.
"""

import builtins
import errno
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from anomalib_npgmf.cli import main
from anomalib_npgmf.utils import atomic_write_text, ensure_writable_folder

from .conftest import tiny_datamodule, tiny_engine, tiny_model


def _inside(path: object, folder: Path) -> bool:
    try:
        return Path(os.fsdecode(path)).absolute().is_relative_to(folder)
    except (TypeError, ValueError):
        return False


@pytest.fixture
def broken_folder(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, int], Path]:
    """``broken_folder(folder, errno)``: every create/write below ``folder`` fails with ``errno`` (EACCES, ENOSPC)."""

    def install(folder: Path, code: int) -> Path:
        folder = folder.absolute()
        folder.mkdir(parents=True, exist_ok=True)
        error = OSError(code, os.strerror(code))

        def deny(function: Callable, path_argument: int = 0, write_only: bool = False) -> Callable:
            def wrapper(*args, **kwargs):
                path = args[path_argument] if len(args) > path_argument else None
                mode = args[1] if len(args) > 1 else kwargs.get("mode", kwargs.get("flags", "r"))
                writing = (
                    not write_only
                    or (isinstance(mode, str) and any(flag in mode for flag in "wax+"))
                    or (isinstance(mode, int) and mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
                )
                if path is not None and _inside(path, folder) and writing:
                    raise OSError(error.errno, error.strerror, os.fsdecode(path))
                return function(*args, **kwargs)

            return wrapper

        monkeypatch.setattr(os, "mkdir", deny(os.mkdir))
        monkeypatch.setattr(os, "symlink", deny(os.symlink, 1))
        monkeypatch.setattr(os, "open", deny(os.open, write_only=True))
        monkeypatch.setattr(builtins, "open", deny(builtins.open, write_only=True))
        monkeypatch.setattr(io, "open", deny(io.open, write_only=True))
        return folder

    return install


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC], ids=["read-only", "full"])
def test_writers_name_a_read_only_or_full_folder(tmp_path, broken_folder, code):
    folder = broken_folder(tmp_path / "out", code)
    with pytest.raises(OSError, match=rf"--output {folder / 'reports'} is not a writable folder") as caught:
        ensure_writable_folder(folder / "reports", "--output")
    assert caught.value.errno == code
    with pytest.raises(OSError, match=rf"(folder|output folder) {folder}") as caught:
        atomic_write_text(folder / "loco_report.json", "{}")
    assert caught.value.errno == code
    assert not list(folder.iterdir())


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC], ids=["read-only", "full"])
def test_cli_fails_in_one_line_before_scoring(tmp_path, broken_folder, capsys, code):
    folder = broken_folder(tmp_path / "out", code)
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"never read: the output folder is checked first")
    arguments = ["--root", str(tmp_path), "--category", "x", "--output", str(folder)]
    assert main(["evaluate", "--ckpt", str(checkpoint), *arguments]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert f"--output {folder} is not a writable folder" in error


def test_cli_names_an_output_folder_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    images = tmp_path / "images"
    images.mkdir()
    (images / "x.png").write_bytes(b"")
    model = tmp_path / "model.xml"
    model.write_text("<net/>")
    arguments = ["predict-openvino", "--model", str(model), "--input", str(images), "--output", str(blocker / "out")]
    assert main(arguments) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert f"--output {blocker / 'out'} is not a writable folder" in error


def test_engine_refuses_an_uncreatable_root_dir_before_training(pristine_dataset, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    engine = tiny_engine(blocker / "results")
    with pytest.raises(NotADirectoryError, match=str(blocker)):
        engine.fit(tiny_model("InpFormerPlusPlus"), datamodule=tiny_datamodule(pristine_dataset))


def test_engine_refuses_a_read_only_root_dir_before_training(pristine_dataset, tmp_path, broken_folder):
    folder = broken_folder(tmp_path / "results", errno.EACCES)
    engine = tiny_engine(folder)
    with pytest.raises(PermissionError, match=str(folder)):
        engine.fit(tiny_model("InpFormerPlusPlus"), datamodule=tiny_datamodule(pristine_dataset))


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(pristine_dataset, tmp_path, monkeypatch):
    saves: list[int] = []
    real_save = torch.save

    def save_then_fill_the_disk(obj, stream, *args, **kwargs):
        saves.append(1)
        if len(saves) == 1:
            return real_save(obj, stream, *args, **kwargs)
        stream.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_then_fill_the_disk)
    engine = tiny_engine(tmp_path / "run", max_epochs=3)
    with pytest.raises(OSError, match="No space left"):
        engine.fit(tiny_model("InpFormerPlusPlus"), datamodule=tiny_datamodule(pristine_dataset))
    monkeypatch.undo()
    folder = Path(engine.trainer.checkpoint_callback.dirpath)
    assert sorted(path.name for path in folder.iterdir()) == ["model.ckpt"]  # no partial file left behind
    checkpoint = torch.load(folder / "model.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0 and len(saves) == 2
