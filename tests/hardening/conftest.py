"""Tiny generated data and tiny random-init models for the hardening tests (2 CPU cores: keep everything small)."""

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

IMAGE_SIZE = 64
CATEGORY = "demo_box"
TINY_NPGMF: dict[str, Any] = {
    "variant": "plus",  # the priors and the raw embedding are exercised here; the paper variant has its own tests
    "backbone": "resnet18",
    "pre_trained": False,
    "image_size": IMAGE_SIZE,
    "bottleneck_channels": 32,
    "oce_strides": (1, 1),
    "codebook_size": 16,
    "num_codebooks": 2,
    "prior_channels": 0,
    "patch_prior_dim": 16,
}
TINY_INP: dict[str, Any] = {
    "backbone": "vit_small_patch14_reg4_dinov2",
    "pre_trained": False,
    "backbone_kwargs": {"depth": 4, "embed_dim": 32, "num_heads": 2, "img_size": 28},
    "image_size": 64,
    "crop_size": 56,
    "score_size": None,
    "warmup_steps": 2,
}
GENERATION = {"image_size": IMAGE_SIZE, "n_train": 8, "n_val": 4, "n_test_good": 4, "n_test_per_defect": 1, "seed": 0}


def tiny_model(name: str, **overrides: Any) -> Any:
    """A fresh CPU-tiny, random-init ``Npgmf`` or ``InpFormerPlusPlus``."""
    from anomalib_npgmf import InpFormerPlusPlus, Npgmf

    if name == "Npgmf":
        return Npgmf(**{**TINY_NPGMF, **overrides})
    kwargs = {**TINY_INP, **overrides}
    kwargs["backbone_kwargs"] = dict(kwargs["backbone_kwargs"])
    return InpFormerPlusPlus(**kwargs)


def tiny_datamodule(root: Path, category: str = CATEGORY, batch_size: int = 4) -> Any:
    """LOCO datamodule without worker processes (the CI machine has 2 cores)."""
    from anomalib_npgmf.data import MVTecLOCORegions

    return MVTecLOCORegions(
        root=root, category=category, train_batch_size=batch_size, eval_batch_size=batch_size, num_workers=0
    )


def tiny_engine(output: Path, max_epochs: int = 1, **kwargs: Any) -> Any:
    """anomalib ``Engine`` on one CPU, no logger."""
    from anomalib.engine import Engine

    return Engine(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        default_root_dir=output,
        logger=False,
        enable_progress_bar=False,
        **kwargs,
    )


def checkpoint_of(engine: Any) -> Path:
    """The checkpoint anomalib's Engine wrote (its ModelCheckpoint keeps one ``model.ckpt``, no ``last.ckpt``)."""
    callback = engine.trainer.checkpoint_callback
    path = Path(callback.best_model_path or callback.last_model_path)
    assert path.is_file(), f"no checkpoint written in {callback.dirpath}"
    return path


def predicted_scores(engine: Any, model: Any, datamodule: Any) -> dict[str, float]:
    """Image path -> predicted score of every test image, through ``Engine.predict`` on the test dataloader."""
    datamodule.setup("test")
    batches = engine.predict(model, dataloaders=datamodule.test_dataloader())
    scores: dict[str, float] = {}
    for batch in batches:
        for path, score in zip(batch.image_path, batch.pred_score.reshape(-1).tolist(), strict=True):
            scores[str(path)] = score
    return scores


@pytest.fixture(scope="session")
def pristine_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated LOCO-layout category (never modified: tests copy it)."""
    from anomalib_npgmf.data import generate_demo_dataset

    root = tmp_path_factory.mktemp("hardening_data")
    generate_demo_dataset(root, category=CATEGORY, **GENERATION)
    return root


@pytest.fixture
def dataset_copy(pristine_dataset: Path, tmp_path: Path) -> Callable[..., Path]:
    """``dataset_copy(category=...)``: a private copy of the tiny dataset (root path) that a test may damage."""

    def copy(category: str = CATEGORY) -> Path:
        root = tmp_path / "data"
        shutil.copytree(pristine_dataset / CATEGORY, root / category)
        return root

    return copy


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread: the first ``torch.linalg.pinv`` of a process (Npgmf's priors) took 13-21 s with 2 threads
    on the shared 2-core CI machine, 0.5 s with 1. The thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded_single_thread() -> Iterator[None]:
    """Seeded, one torch thread (module-scoped fixtures that train use :func:`single_thread` themselves)."""
    torch.manual_seed(0)
    with single_thread():
        yield


def subprocess_environment() -> dict[str, str]:
    """Environment of CLI subprocesses: one thread (see above), wide rich tracebacks (last line = our message)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
