"""Synthetic MVTec-LOCO-layout dataset: what the demo and the tests train and score on.

Writes exactly the LOCO folder layout (``train/good``, ``validation/good``, ``test/good``,
``test/logical_anomalies``, ``test/structural_anomalies``, ``ground_truth/<anomaly dir>/<stem>/000.png`` with one file
per defect region holding the defect's pixel value, and ``defects_config.json``), so anomalib's and our LOCO tooling
read it like the real dataset. Two additions real LOCO lacks: ``defect_types.json`` (image -> defect name, for
per-defect reports) and ``generation.json`` (the parameters, so a re-run with the same ones is a no-op).

Deterministic: the same parameters give byte-identical PNG files. Written atomically: the category is built in a
temporary folder beside the target and renamed into place.
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .scenes import SCENES, DefectSpec, render

GENERATOR_VERSION = 1


def _defects_config(defects: list[DefectSpec], image_size: int) -> list[dict]:
    """LOCO's ``defects_config.json`` entries; absolute saturation areas scale with the image area."""
    area_scale = (image_size / 128) ** 2
    return [
        {
            "defect_name": spec.name,
            "pixel_value": spec.pixel_value,
            "saturation_threshold": spec.saturation_threshold
            if spec.relative_saturation
            else round(spec.saturation_threshold * area_scale),
            "relative_saturation": spec.relative_saturation,
        }
        for spec in defects
    ]


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", optimize=False)


def generate_demo_dataset(
    root: str | Path,
    category: str = "demo_box",
    image_size: int = 128,
    n_train: int = 60,
    n_val: int = 20,
    n_test_good: int = 20,
    n_test_per_defect: int = 6,
    seed: int = 0,
    scene: str = "box",
    overwrite: bool = False,
) -> Path:
    """Write one seeded LOCO-layout category and return its folder ``root/category``.

    Args:
        root: Dataset root (the folder that holds categories, like ``MVTec_LOCO``).
        category: Category folder name; also the text the models' category prior reads.
        image_size: Side of the square images in pixels (>= 64).
        n_train: Normal training images.
        n_val: Normal validation images.
        n_test_good: Normal test images.
        n_test_per_defect: Test images per defect kind.
        seed: Random seed; the same parameters give byte-identical files.
        scene: ``"box"`` (circles, a bar and a square in two compartments) or ``"pins"`` (one pin per grid cell).
        overwrite: Replace an existing, different category folder.
    """
    if scene not in SCENES:
        msg = f"scene must be one of {sorted(SCENES)}, got '{scene}'"
        raise ValueError(msg)
    if image_size < 64:
        msg = f"image_size must be at least 64 pixels, got {image_size}"
        raise ValueError(msg)
    counts = {"n_train": n_train, "n_val": n_val, "n_test_good": n_test_good, "n_test_per_defect": n_test_per_defect}
    if any(value < 1 for value in counts.values()) or n_train < 2:
        msg = f"image counts must be positive (and n_train >= 2), got {counts}"
        raise ValueError(msg)
    if not category or "/" in category or category.strip() != category:
        msg = f"category must be a plain folder name, got {category!r}"
        raise ValueError(msg)
    target = Path(root) / category
    parameters = {
        "generator_version": GENERATOR_VERSION,
        "category": category,
        "image_size": image_size,
        "seed": seed,
        "scene": scene,
        **counts,
    }
    record = target / "generation.json"
    if target.exists():
        if record.is_file() and json.loads(record.read_text()) == parameters:
            return target
        if not overwrite:
            msg = (
                f"{target} already exists and was not generated with these parameters; pass overwrite=True "
                "(CLI: --overwrite) to replace it, or choose another --root/--category"
            )
            raise FileExistsError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{category}.", dir=target.parent))
    try:
        _write_category(staging, parameters, SCENES[scene].defects)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_category(folder: Path, parameters: dict, defects: list[DefectSpec]) -> None:
    size, scene = parameters["image_size"], parameters["scene"]
    rng = np.random.default_rng(parameters["seed"])
    jobs: list[tuple[str, str | None, int]] = [("train/good", None, i) for i in range(parameters["n_train"])]
    jobs += [("validation/good", None, i) for i in range(parameters["n_val"])]
    jobs += [("test/good", None, i) for i in range(parameters["n_test_good"])]
    for kind in ("logical", "structural"):
        index = 0
        for spec in (d for d in defects if d.kind == kind):
            for _ in range(parameters["n_test_per_defect"]):
                jobs.append((f"test/{kind}_anomalies", spec.name, index))
                index += 1
    pixel_values = {spec.name: spec.pixel_value for spec in defects}
    defect_types: dict[str, str] = {}
    for split, defect, index in tqdm(jobs, desc=f"Generating {parameters['category']}", unit="img", disable=None):
        image, regions = render(scene, size, rng, defect)
        stem = f"{index:03d}"
        _save_png(image, folder / split / f"{stem}.png")
        if defect is None:
            continue
        if not regions:  # every anomalous image must have at least one region
            msg = f"internal error: defect {defect} produced no region"
            raise RuntimeError(msg)
        anomaly_dir = split.split("/")[1]
        defect_types[f"test/{anomaly_dir}/{stem}"] = defect
        for number, region in enumerate(regions):
            mask = np.where(region.mask, pixel_values[region.defect], 0).astype(np.uint8)
            _save_png(mask, folder / "ground_truth" / anomaly_dir / stem / f"{number:03d}.png")
    (folder / "defects_config.json").write_text(json.dumps(_defects_config(defects, size), indent=2) + "\n")
    (folder / "defect_types.json").write_text(json.dumps(defect_types, indent=2, sort_keys=True) + "\n")
    (folder / "generation.json").write_text(json.dumps(parameters, indent=2) + "\n")


def main_generate(argv: list[str] | None = None) -> int:
    """``anomalib-npgmf generate``: write a synthetic LOCO-layout category and print a summary."""
    parser = argparse.ArgumentParser(prog="anomalib-npgmf generate", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("datasets/demo"), help="dataset root (default datasets/demo)")
    parser.add_argument("--category", default="demo_box", help="category folder name (default demo_box)")
    parser.add_argument("--scene", default="box", choices=sorted(SCENES), help="scene layout (default box)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--n-val", type=int, default=20)
    parser.add_argument("--n-test-good", type=int, default=20)
    parser.add_argument("--n-test-per-defect", type=int, default=6)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, different category folder")
    arguments = parser.parse_args(argv)
    folder = generate_demo_dataset(
        arguments.root,
        arguments.category,
        arguments.image_size,
        arguments.n_train,
        arguments.n_val,
        arguments.n_test_good,
        arguments.n_test_per_defect,
        arguments.seed,
        arguments.scene,
        arguments.overwrite,
    )
    print(f"Dataset: {folder}")
    for split in ("train/good", "validation/good", "test/good", "test/logical_anomalies", "test/structural_anomalies"):
        print(f"  {split:<26} {len(list((folder / split).glob('*.png'))):>4} images")
    defects = json.loads((folder / "defects_config.json").read_text())
    print(f"  defect kinds: {', '.join(d['defect_name'] for d in defects)}")
    return 0
