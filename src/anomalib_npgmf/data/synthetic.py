"""Synthetic MVTec-LOCO-layout dataset: what the demo and the tests train and score on.

Writes exactly the LOCO folder layout (``train/good``, ``validation/good``, ``test/good``,
``test/logical_anomalies``, ``test/structural_anomalies``, ``ground_truth/<anomaly dir>/<stem>/000.png`` with one file
per defect region holding the defect's pixel value, and ``defects_config.json``), so anomalib's and our LOCO tooling
read it like the real dataset; or, with ``layout="mvtec_ad"`` / ``"visa"``, the MVTec AD layout or VisA's prepared
``visa_pytorch`` layout (see :mod:`.layouts`). Images may have the real datasets' sizes (LOCO 1600x1100 or 800x1600,
MVTec AD 1024 or 700 px, VisA ~1500x1000) and LOCO images several ground-truth files. Two additions the real datasets
lack: ``defect_types.json`` (image -> defect name, for per-defect reports) and
``generation.json`` (the parameters, so a re-run with the same ones is a no-op).

Deterministic: the same parameters give byte-identical PNG files. Written atomically: the category is built in a
temporary folder beside the target and renamed into place.
"""

import argparse
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .layouts import LAYOUTS, defects_of, expected_counts, image_suffix, metadata_files, write_category
from .scenes import SCENES

GENERATOR_VERSION = 1
MAX_IMAGE_SIZE = 2048  # per side; drawn at most at 512 px (see scenes.MAX_DRAW_SIDE) and resized
MAX_STRUCTURAL_REGIONS = 4


def generate_demo_dataset(
    root: str | Path,
    category: str = "demo_box",
    image_size: int | tuple[int, int] = 128,
    n_train: int = 60,
    n_val: int = 20,
    n_test_good: int = 20,
    n_test_per_defect: int = 6,
    seed: int = 0,
    scene: str = "box",
    overwrite: bool = False,
    layout: str = "mvtec_loco",
    defects: Sequence[str] | None = None,
    structural_regions: int = 1,
) -> Path:
    """Write one seeded synthetic category and return its folder ``root/category``.

    Args:
        root: Dataset root (the folder that holds categories, like ``MVTec_LOCO``).
        category: Category folder name; also the text the models' category prior reads.
        image_size: Side of square images, or (width, height), in pixels (64-2048 per side).
        n_train: Normal training images.
        n_val: Normal validation images (LOCO layout only; MVTec AD and VisA have no validation split).
        n_test_good: Normal test images.
        n_test_per_defect: Test images per defect kind.
        seed: Random seed; the same parameters give byte-identical files.
        scene: ``"box"`` (circles, a bar and a square in two compartments), ``"pins"`` (one pin per grid cell) or
            ``"screws"`` (loose bolts, washers and nuts anywhere at any angle; held out, never used for tuning).
        overwrite: Replace an existing, different category folder.
        layout: ``"mvtec_loco"``, ``"mvtec_ad"`` or ``"visa"``.
        defects: Draw only these defect kinds of the scene (fewer test images, e.g. one logical and one structural
            for quick end-to-end runs); ``None``: all.
        structural_regions: Scratches / contaminations per defective image, each its own region (LOCO: its own
            ground-truth file), as real LOCO images with several masks.
    """
    parameters = _checked_parameters(
        category, image_size, n_train, n_val, n_test_good, n_test_per_defect, seed, scene, layout
    )
    parameters.update(_checked_extras(scene, defects, structural_regions))
    target = Path(root) / category
    if target.exists():
        if _holds_generation(target, parameters):
            return target
        if not overwrite:
            msg = (
                f"{target} already exists and is not a complete generation with these parameters "
                f"({_describe_existing(target)}); pass overwrite=True (CLI: --overwrite) to replace it, or choose "
                "another --root/--category"
            )
            raise FileExistsError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{category}.", dir=target.parent))
    try:
        write_category(staging, parameters)
        _move_into_place(staging, target, parameters)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
    return target


def _checked_extras(scene: str, defects: Sequence[str] | None, structural_regions: int) -> dict:
    """Record entries of the newer options; left out at their defaults, so older records (and data) still match."""
    extras: dict = {}
    if defects is not None:
        known = [spec.name for spec in SCENES[scene].defects]
        chosen = [str(name) for name in ([defects] if isinstance(defects, str) else defects)]
        unknown = sorted(set(chosen) - set(known))
        if not chosen or unknown or len(set(chosen)) != len(chosen):
            msg = f"defects must be distinct names of the {scene!r} scene's defects {known}, got {chosen}"
            raise ValueError(msg)
        extras["defects"] = [name for name in known if name in chosen]
    if (
        isinstance(structural_regions, bool)
        or not isinstance(structural_regions, int)
        or not 1 <= structural_regions <= MAX_STRUCTURAL_REGIONS
    ):
        msg = f"structural_regions must be an integer from 1 to {MAX_STRUCTURAL_REGIONS}, got {structural_regions!r}"
        raise ValueError(msg)
    if structural_regions > 1:
        extras["structural_regions"] = structural_regions
    return extras


def _checked_size(image_size: object) -> int | list[int]:
    """A square side (int, as older records hold it) or [width, height] (a square pair becomes an int)."""
    sides = image_size if isinstance(image_size, list | tuple) else [image_size]
    if len(sides) not in {1, 2} or any(
        isinstance(side, bool) or not isinstance(side, int) or not 64 <= side <= MAX_IMAGE_SIZE for side in sides
    ):
        msg = (
            f"image_size must be an integer or (width, height), each from 64 to {MAX_IMAGE_SIZE} pixels, "
            f"got {image_size!r}"
        )
        raise ValueError(msg)
    return sides[0] if len(set(sides)) == 1 else [int(side) for side in sides]


def _checked_parameters(
    category: str,
    image_size: int | tuple[int, int],
    n_train: int,
    n_val: int,
    n_test_good: int,
    n_test_per_defect: int,
    seed: int,
    scene: str,
    layout: str,
) -> dict:
    """The generation record (what ``generation.json`` holds), after checking every argument."""
    if scene not in SCENES:
        msg = f"scene must be one of {sorted(SCENES)}, got {scene!r}"
        raise ValueError(msg)
    if layout not in LAYOUTS:
        msg = f"layout must be one of {list(LAYOUTS)}, got {layout!r}"
        raise ValueError(msg)
    image_size = _checked_size(image_size)
    counts = {"n_train": n_train, "n_val": n_val, "n_test_good": n_test_good, "n_test_per_defect": n_test_per_defect}
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in counts.values()) or n_train < 2:
        msg = f"image counts must be positive integers (and n_train >= 2), got {counts}"
        raise ValueError(msg)
    if isinstance(seed, bool) or not isinstance(seed, int):
        msg = f"seed must be an integer, got {seed!r}"
        raise ValueError(msg)
    if (
        not isinstance(category, str)
        or not category
        or category.startswith(".")
        or any(sep in category for sep in ("/", "\\"))
        or category.strip() != category
    ):
        msg = f"category must be a plain folder name (no separators, not hidden), got {category!r}"
        raise ValueError(msg)
    parameters = {
        "generator_version": GENERATOR_VERSION,
        "category": category,
        "image_size": image_size,
        "seed": seed,
        "scene": scene,
        **counts,
    }
    if layout != "mvtec_loco":  # LOCO records stay as they were before layouts existed, so old data is reused
        parameters["layout"] = layout
    return parameters


def _read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / "generation.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _holds_generation(folder: Path, parameters: dict) -> bool:
    """Whether ``folder`` holds this exact generation, complete (a re-run is then a no-op)."""
    if _read_record(folder) != parameters:
        return False
    if not all((folder / name).is_file() for name in metadata_files(parameters)):
        return False
    pattern = f"*{image_suffix(parameters)}"
    return all(
        len(list((folder / split).glob(pattern))) == count for split, count in expected_counts(parameters).items()
    )


def _describe_existing(folder: Path) -> str:
    record = _read_record(folder)
    if record is None:
        return "no readable generation.json"
    return "generation.json: " + ", ".join(f"{key}={value}" for key, value in sorted(record.items()))


def _move_into_place(staging: Path, target: Path, parameters: dict) -> None:
    """Rename the finished ``staging`` folder to ``target``; an old ``target`` is swapped out, then deleted.

    Two processes generating the same data at once (e.g. DDP ranks) both succeed: the second finds the first one's
    identical result in place and keeps it.
    """
    if _holds_generation(target, parameters):  # another process finished the same generation meanwhile
        return
    staging.chmod(0o755)  # mkdtemp makes it private to its owner; a dataset is for everyone who may read the root
    retired = None
    if target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent)) / target.name
        target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        if retired is not None and not target.exists():
            retired.rename(target)  # put the old data back
            retired = None
        if not _holds_generation(target, parameters):
            raise
    if retired is not None:
        shutil.rmtree(retired.parent, ignore_errors=True)


def main_generate(argv: list[str] | None = None) -> int:
    """``anomalib-npgmf generate``: write a synthetic LOCO-layout category and print a summary."""
    parser = argparse.ArgumentParser(prog="anomalib-npgmf generate", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("datasets/demo"), help="dataset root (default datasets/demo)")
    parser.add_argument("--category", default="demo_box", help="category folder name (default demo_box)")
    parser.add_argument("--scene", default="box", choices=sorted(SCENES), help="scene (default box)")
    parser.add_argument("--layout", default="mvtec_loco", choices=LAYOUTS, help="folder layout (default mvtec_loco)")
    parser.add_argument(
        "--image-size", type=_parse_size, default=128, help="side, or WIDTHxHEIGHT (e.g. 1600x1100); default 128"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--n-val", type=int, default=20)
    parser.add_argument("--n-test-good", type=int, default=20)
    parser.add_argument("--n-test-per-defect", type=int, default=6)
    parser.add_argument("--defects", nargs="+", default=None, help="draw only these defect kinds (default: all)")
    parser.add_argument("--structural-regions", type=int, default=1, help="regions per structural defect (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, different category folder")
    arguments = parser.parse_args(argv)
    record_time = _mtime_ns(arguments.root / arguments.category / "generation.json")
    folder = generate_demo_dataset(
        arguments.root,
        arguments.category,
        image_size=arguments.image_size,
        n_train=arguments.n_train,
        n_val=arguments.n_val,
        n_test_good=arguments.n_test_good,
        n_test_per_defect=arguments.n_test_per_defect,
        seed=arguments.seed,
        scene=arguments.scene,
        overwrite=arguments.overwrite,
        layout=arguments.layout,
        defects=arguments.defects,
        structural_regions=arguments.structural_regions,
    )
    reused = record_time is not None and record_time == _mtime_ns(folder / "generation.json")
    print(f"Dataset: {folder}" + (" (already generated with these parameters: reused)" if reused else ""))
    parameters = _read_record(folder) or {}
    pattern = f"*{image_suffix(parameters)}" if parameters else "*.png"
    for split in expected_counts(parameters):
        print(f"  {split:<32} {len(list((folder / split).glob(pattern))):>4} images")
    per_defect = Counter(json.loads((folder / "defect_types.json").read_text()).values())
    print("  per defect kind:")
    for spec in defects_of(parameters) if parameters else SCENES[arguments.scene].defects:
        print(f"    {spec.kind:<10} {spec.name:<20} {per_defect[spec.name]:>4} images")
    return 0


def _parse_size(text: str) -> int | tuple[int, int]:
    """``128`` or ``1600x1100`` (width x height)."""
    try:
        sides = [int(side) for side in text.lower().split("x")]
    except ValueError:
        sides = []
    if len(sides) not in {1, 2}:
        msg = f"expected a side like 128 or WIDTHxHEIGHT like 1600x1100, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
