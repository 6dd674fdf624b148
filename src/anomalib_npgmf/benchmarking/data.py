"""The data every benchmark reads: generated LOCO-layout scenes (or a real category) and the datamodules on them."""

from pathlib import Path
from typing import Any

# ``--small`` generated data (tests): enough images for every model's fit and the LOCO metrics.
SMALL_DATA: dict[str, int] = {"n_train": 12, "n_val": 4, "n_test_good": 4, "n_test_per_defect": 1}


def generate_scenes(root: Path, scenes: list[str], image_size: int, seed: int, small: bool) -> list[str]:
    """Generate one ``demo_<scene>`` category per scene under ``root`` (reused when it exists); their names."""
    from anomalib_npgmf.data import generate_demo_dataset

    counts = SMALL_DATA if small else {}
    categories = []
    for scene in scenes:
        categories.append(f"demo_{scene}")
        generate_demo_dataset(root, categories[-1], image_size=image_size, seed=seed, scene=scene, **counts)
    return categories


def loco_datamodule(root: Any, category: str, train_batch_size: int = 8) -> Any:
    """A LOCO-layout category without worker processes (2-core machine) or the LOCO report (benchmarks score it)."""
    from anomalib_npgmf.data import MVTecLOCORegions

    return MVTecLOCORegions(
        root=root,
        category=category,
        train_batch_size=train_batch_size,
        eval_batch_size=16,
        num_workers=0,
        loco_report=False,
    )


def is_loco_category(folder: Path) -> bool:
    """Whether a category folder has MVTec LOCO's logical/structural test folders (else MVTec AD / VisA layout)."""
    return any((folder / "test" / name).is_dir() for name in ("logical_anomalies", "structural_anomalies"))


def dump_test_set(datamodule: Any, path: Path) -> list[int]:
    """Test images as one uint8 array (N, 3, H, W) for the subprocesses (lossless: the PNGs are 8-bit); labels."""
    import numpy as np
    import torch

    datamodule.setup("test")
    images, labels = [], []
    for batch in datamodule.test_dataloader():
        images.append((batch.image * 255).round().clamp(0, 255).to(torch.uint8).numpy())
        labels += [int(label) for label in torch.as_tensor(batch.gt_label).reshape(-1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(images))
    return labels
