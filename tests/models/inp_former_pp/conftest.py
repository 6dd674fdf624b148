"""Tiny, random-init INP-Former++ settings and generated data shared by this folder's tests."""

from pathlib import Path

import pytest

# A 4-block ViT (dim 32) whose native grid (2x2 at 28 px) differs from the 4x4 grid of a 56 px input, so the
# position-embedding interpolation is exercised everywhere, export included.
TINY_BACKBONE = {"depth": 4, "embed_dim": 32, "num_heads": 2, "img_size": 28}
TINY_MODEL = {
    "backbone": "vit_small_patch14_reg4_dinov2",
    "pre_trained": False,
    "backbone_kwargs": TINY_BACKBONE,
    "image_size": 64,
    "crop_size": 56,
    "score_size": None,
}


@pytest.fixture
def tiny_kwargs() -> dict:
    """Constructor arguments of a CPU-tiny, random-init InpFormerPlusPlus."""
    return {**TINY_MODEL, "backbone_kwargs": dict(TINY_BACKBONE)}


@pytest.fixture(scope="session")
def generated_categories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small generated LOCO-layout categories (different scenes) under one root."""
    from anomalib_npgmf.data import generate_demo_dataset

    root = tmp_path_factory.mktemp("inp_data")
    for category, scene, seed in (("demo_box", "box", 0), ("demo_pins", "pins", 1)):
        generate_demo_dataset(
            root,
            category=category,
            image_size=64,
            n_train=16,
            n_val=6,
            n_test_good=6,
            n_test_per_defect=2,
            seed=seed,
            scene=scene,
        )
    return root
