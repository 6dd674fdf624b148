"""Checkpoints: weights-only loading, the package-version check, atomic writes attached by the models themselves."""

import logging
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

import anomalib_npgmf
from anomalib_npgmf import InpFormerPlusPlus, Npgmf
from anomalib_npgmf.models.common import AtomicCheckpointIO, CheckpointVersionError, check_version
from anomalib_npgmf.models.common import checkpoint as checkpoint_module

from .conftest import checkpoint_of, single_thread, tiny_datamodule, tiny_engine, tiny_model

MODELS = {"Npgmf": Npgmf, "InpFormerPlusPlus": InpFormerPlusPlus}


@pytest.fixture(scope="module", params=list(MODELS))
def trained(request, pristine_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, object]:
    """(model name, checkpoint, engine) of a 1-epoch tiny run."""
    torch.manual_seed(0)
    engine = tiny_engine(tmp_path_factory.mktemp(f"ckpt_{request.param}"))
    with single_thread():
        engine.fit(tiny_model(request.param), datamodule=tiny_datamodule(pristine_dataset))
    return request.param, checkpoint_of(engine), engine


def _restamped(source: Path, target: Path, version: str | None) -> Path:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    if version is None:
        checkpoint.pop(checkpoint_module.VERSION_KEY)
    else:
        checkpoint[checkpoint_module.VERSION_KEY] = version
    torch.save(checkpoint, target)
    return target


def test_checkpoint_loads_with_weights_only_and_carries_the_version(trained):
    name, path, _ = trained
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint[checkpoint_module.VERSION_KEY] == anomalib_npgmf.__version__
    model = MODELS[name].load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert isinstance(model, MODELS[name])


def test_models_write_checkpoints_atomically_through_the_trainer(trained):
    _, _, engine = trained
    assert isinstance(engine.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_user_chosen_checkpoint_io_is_kept(pristine_dataset, tmp_path):
    class MyCheckpointIO(TorchCheckpointIO):
        pass

    engine = tiny_engine(tmp_path, plugins=[MyCheckpointIO()])
    engine.fit(tiny_model("InpFormerPlusPlus"), datamodule=tiny_datamodule(pristine_dataset))
    assert type(engine.trainer.strategy.checkpoint_io) is MyCheckpointIO


@pytest.mark.parametrize("version", ["1.0.0", "0.2.0", "99.1"])
def test_a_checkpoint_from_a_newer_version_is_refused_naming_both_versions(trained, tmp_path, version):
    name, path, _ = trained
    future = _restamped(path, tmp_path / "future.ckpt", version)
    pattern = rf"{name} checkpoint was written by anomalib-npgmf {version}, newer than the installed 0\.1\.0"
    with pytest.raises(CheckpointVersionError, match=pattern):
        MODELS[name].load_from_checkpoint(future, map_location="cpu")


def test_engine_test_refuses_a_future_checkpoint_too(trained, tmp_path, pristine_dataset):
    name, path, _ = trained
    future = _restamped(path, tmp_path / "future.ckpt", "2.0.0")
    engine = tiny_engine(tmp_path / "run")
    with pytest.raises(CheckpointVersionError, match=r"upgrade anomalib-npgmf to >= 2\.0"):
        engine.test(tiny_model(name), datamodule=tiny_datamodule(pristine_dataset), ckpt_path=future)


def test_an_older_compatible_checkpoint_loads(trained, tmp_path, monkeypatch):
    name, path, _ = trained
    old = _restamped(path, tmp_path / "old.ckpt", "0.1.0")
    monkeypatch.setattr(anomalib_npgmf, "__version__", "0.3.1")  # a later release reading a 0.1.0 checkpoint
    reloaded = MODELS[name].load_from_checkpoint(old, map_location="cpu").eval()
    original = MODELS[name].load_from_checkpoint(path, map_location="cpu").eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(images).pred_score, original(images).pred_score)


def test_a_checkpoint_older_than_the_oldest_compatible_is_refused(trained, tmp_path, monkeypatch):
    name, path, _ = trained
    monkeypatch.setattr(checkpoint_module, "OLDEST_COMPATIBLE_VERSION", "0.1.0")
    ancient = _restamped(path, tmp_path / "ancient.ckpt", "0.0.3")
    with pytest.raises(CheckpointVersionError, match=r"written by anomalib-npgmf 0\.0\.3.*from 0\.1\.0 on: retrain"):
        MODELS[name].load_from_checkpoint(ancient, map_location="cpu")


def test_an_unstamped_checkpoint_loads_with_a_warning(trained, tmp_path, caplog):
    name, path, _ = trained
    unstamped = _restamped(path, tmp_path / "unstamped.ckpt", None)
    with caplog.at_level(logging.WARNING, logger=checkpoint_module.__name__):
        MODELS[name].load_from_checkpoint(unstamped, map_location="cpu")
    assert "has no anomalib_npgmf_version entry" in caplog.text


def test_an_unreadable_version_is_refused():
    with pytest.raises(CheckpointVersionError, match="unreadable anomalib_npgmf_version 'banana'"):
        check_version({"anomalib_npgmf_version": "banana"}, "Npgmf")


def test_atomic_writer_leaves_the_old_file_when_serialising_fails(tmp_path):
    target = tmp_path / "model.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "bad": Unpicklable()}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]
    assert torch.load(target, weights_only=True) == {"epoch": 1}
