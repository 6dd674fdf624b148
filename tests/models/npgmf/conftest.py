"""A tiny trained Npgmf shared by the integration tests of this folder (trained once per session)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

IMAGE_SIZE = 64
TINY_NPGMF = {
    "variant": "plus",  # the priors and the raw embedding are exercised here; the paper variant has its own tests
    "backbone": "resnet18",
    "pre_trained": False,
    "image_size": IMAGE_SIZE,
    "bottleneck_channels": 64,
    "oce_strides": (1, 1),
    "codebook_size": 32,
    "num_codebooks": 2,
    "prior_channels": 16,
}


def fitted_tiny_npgmf(**overrides: object) -> object:
    """A tiny plus Npgmf with priors and normalisation fitted on 8 noise images, in eval mode (same seed every call,
    so two calls differ only by ``overrides``)."""
    from anomalib_npgmf import Npgmf

    torch.manual_seed(0)
    model = Npgmf(**{**TINY_NPGMF, **overrides}, category="demo_box", visualizer=False)
    batch = tiny_normal_batch()
    model.fit_priors([batch])
    model.fit_normalization([[batch]])
    return model.eval()


# the demo config's image-level priors with both weights chosen at fit time, on the tiny model
CHOSEN_WEIGHTS = {
    "use_invariant_prior": True,
    "choose_invariant_weight": True,
    "use_part_prior": True,
    "part_weight": 4.0,
    "part_floor": 0.0,
    "choose_part_weight": True,
}


def assert_a_chosen_weight_scores_as_the_fixed_one(
    fitted: object, build: Callable[..., object], prior: str, weights: tuple[float, float], images: torch.Tensor
) -> None:
    """``fitted`` with ``prior``'s ("invariant" / "part") chosen weight set to each of ``weights`` scores ``images``
    exactly as a model built with that fixed weight (``build(**overrides)``) holding the same state, and the two
    weights score differently (the weight reaches the score). ``fitted``'s state is restored."""
    state = fitted.state_dict()
    buffers = {f"{prior}_weight", f"{prior}_weight_chosen", f"{prior}_weight_aurocs"}  # what a fixed model lacks
    scores = {}
    for weight in weights:
        fitted.model.set_chosen_weight(prior, weight)
        with torch.no_grad():
            scores[weight] = fitted(images).pred_score.reshape(-1)
        fixed = build(**{f"choose_{prior}_weight": False, f"{prior}_weight": weight})
        missing, unexpected = fixed.load_state_dict(fitted.state_dict(), strict=False)
        assert not missing and {key.split(".")[-1] for key in unexpected} == buffers
        with torch.no_grad():
            torch.testing.assert_close(fixed.eval()(images).pred_score.reshape(-1), scores[weight])
    assert float((scores[weights[0]] - scores[weights[1]]).abs().max()) > 1e-3
    fitted.load_state_dict(state)


def seeded_npgmf(settings: dict, category: str, **overrides: object) -> object:
    """An Npgmf of ``settings`` (with ``overrides``) for ``category``, torch seeded first (the same initial weights
    every call)."""
    from anomalib_npgmf import Npgmf

    torch.manual_seed(0)
    return Npgmf(**{**settings, **overrides}, category=category, visualizer=False)


def fitted_on(model: object, datamodule: object) -> object:
    """``model`` with its priors fitted on ``datamodule``'s training images and its normalisation (and chosen weights)
    on its validation images, as training fits them; in eval mode."""
    model.fit_priors(datamodule.train_dataloader())
    model.fit_normalization([datamodule.val_dataloader()])
    return model.eval()


SMALL_SCREWS = {"n_train": 12, "n_val": 8, "n_test_good": 4, "n_test_per_defect": 2, "scene": "screws"}
SMALL_BOX = {"n_train": 8, "n_val": 6, "n_test_good": 3, "n_test_per_defect": 1}


def small_screws_scene(root: Path) -> Path:
    """A small generated screws category (loose parts to remove and duplicate) at :data:`IMAGE_SIZE`, under ``root``."""
    from anomalib_npgmf.data import generate_demo_dataset

    return generate_demo_dataset(root, "demo_screws", image_size=IMAGE_SIZE, seed=0, **SMALL_SCREWS)


def small_scene_datamodule(root: Path, category: str, sizes: dict) -> object:
    """A small generated ``category`` (``sizes``: :data:`SMALL_SCREWS` / :data:`SMALL_BOX`) at :data:`IMAGE_SIZE`
    under ``root``, as a set-up :func:`tiny_datamodule`."""
    from anomalib_npgmf.data import generate_demo_dataset

    generate_demo_dataset(root, category, image_size=IMAGE_SIZE, seed=0, **sizes)
    datamodule = tiny_datamodule(root, category)
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> object:
    """The test module's small generated scene (its ``SCENE``: category, :data:`SMALL_SCREWS` / :data:`SMALL_BOX`)
    at the tiny model's size, as a set-up tiny datamodule."""
    category, sizes = request.module.SCENE
    return small_scene_datamodule(tmp_path_factory.mktemp(category), category, sizes)


@pytest.fixture(scope="module")
def fitted(request: pytest.FixtureRequest, scene: object) -> object:
    """The test module's model (its ``_model()``) fitted on its ``scene``, as training fits it."""
    return fitted_on(request.module._model(), scene)


def flat_normal_batch(count: int = 4) -> object:
    """``count`` plain grey "normal" images at :data:`IMAGE_SIZE`: nothing to cut a part from, so no pseudo-anomaly."""
    from anomalib.data import ImageBatch

    return ImageBatch(
        image=torch.full((count, 3, IMAGE_SIZE, IMAGE_SIZE), 0.5),
        gt_label=torch.zeros(count, dtype=torch.long),
        image_path=[f"/flat/{index}.png" for index in range(count)],
    )


def tiny_normal_batch() -> object:
    """The 8 noise "normal" images :func:`fitted_tiny_npgmf` fits everything on (the same every call)."""
    from anomalib.data import ImageBatch

    images = torch.rand((8, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(1))
    paths = [f"/data/demo_box/train/good/{i}.png" for i in range(8)]
    return ImageBatch(image=images, gt_label=torch.zeros(8, dtype=torch.long), image_path=paths)


@pytest.fixture
def tiny_npgmf_kwargs() -> dict:
    """Constructor arguments of a CPU-tiny, random-init Npgmf."""
    return dict(TINY_NPGMF)


@dataclass
class TrainedRun:
    """What the integration tests need from one training run."""

    dataset_root: Path
    category: str
    output: Path
    model: object
    engine: object
    datamodule: object
    checkpoint: Path
    test_metrics: dict


def tiny_datamodule(root: Path, category: str) -> object:
    """Small batches, no worker processes (CI has 2 cores)."""
    from anomalib_npgmf.data import MVTecLOCORegions

    return MVTecLOCORegions(root=root, category=category, train_batch_size=8, eval_batch_size=8, num_workers=0)


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The package's own generated LOCO-layout category (seeded)."""
    from anomalib_npgmf.data import generate_demo_dataset

    root = tmp_path_factory.mktemp("demo_data")
    generate_demo_dataset(root, category="demo_box", image_size=128, seed=0)
    return root, "demo_box"


@pytest.fixture(scope="session")
def trained_npgmf(demo_dataset: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """Npgmf trained for 1 epoch with anomalib's Engine, then tested."""
    from anomalib.engine import Engine

    from anomalib_npgmf import Npgmf

    root, category = demo_dataset
    output = tmp_path_factory.mktemp("npgmf_run")
    torch.manual_seed(0)
    model = Npgmf(**TINY_NPGMF)
    datamodule = tiny_datamodule(root, category)
    engine = Engine(max_epochs=1, accelerator="cpu", devices=1, default_root_dir=output, logger=False)
    engine.fit(model, datamodule=datamodule)
    checkpoint = Path(
        engine.trainer.checkpoint_callback.best_model_path or engine.trainer.checkpoint_callback.last_model_path
    )
    metrics = engine.test(model, datamodule=datamodule)[0]
    return TrainedRun(root, category, output, model, engine, datamodule, checkpoint, metrics)


TRAY_BACKGROUND = (0.7, 0.65, 0.6)
TRAY_PART_COLOUR = (0.3, 0.3, 0.35)


def plain_tray(
    rng: np.random.Generator,
    discs: int = 2,
    bars: int = 1,
    bar_length: int | Sequence[int] = 14,
    shade: float = 0.0,
) -> torch.Tensor:
    """A 64 px plain tray with ``discs`` 5x5 squares and ``bars`` 2-px-wide bars at random non-touching cells.

    ``bar_length``: one length for every bar, or one per bar; ``shade``: each part's colour is moved by a uniform
    draw in [-shade, shade] (the same on every channel), as the generated scenes shade their parts.
    """
    lengths = [bar_length] * bars if isinstance(bar_length, int) else list(bar_length)
    image = np.empty((64, 64, 3))
    image[:] = TRAY_BACKGROUND
    cells = rng.permutation(9)[: discs + bars]  # a 3x3 grid of 21-px cells: parts never touch
    for index, cell in enumerate(cells):
        top, left = 21 * (cell // 3) + 3, 21 * (cell % 3) + 3
        height, width = (5, 5) if index < discs else (2, lengths[index - discs])
        colour = np.asarray(TRAY_PART_COLOUR) + (rng.uniform(-shade, shade) if shade else 0.0)
        image[top : top + height, left : left + width] = colour
    noise = rng.normal(0.0, 0.01, image.shape)
    return torch.from_numpy(np.clip(image + noise, 0, 1)).permute(2, 0, 1).float()
