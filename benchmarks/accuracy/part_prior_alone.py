"""The part prior alone, no network: fitted on a generated scene's training normals, scored on its test images.

Why: the part prior reads only the images, so what it can and cannot see is measurable in seconds, apart from the
rest of Npgmf (issue 18's per-defect-kind analysis). ``--cluster-on all`` clusters kinds on colour as well as shape
(the prior before 2026-12-07) for comparison:

    python benchmarks/accuracy/part_prior_alone.py --root DATA --scenes box pins screws --data-seeds 0 1 \\
        [--cluster-on shape|all] [--image-size 128] [--json FILE]

Prints, per scene, logical / structural image AUROC and each defect kind's AUROC against the good test images, the
mean over the data seeds.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from per_defect_kind import per_kind

from anomalib_npgmf.benchmarking.data import generate_scenes
from anomalib_npgmf.models.npgmf.components import part_prior
from anomalib_npgmf.models.npgmf.components.part_prior import IMAGENET_MEAN, IMAGENET_STD, PartNormalityPrior


def _images(paths: list[Path]) -> torch.Tensor:
    """Pre-processed as Npgmf's default pre-processor does (the generated images are at the model's size)."""
    rgb = np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255 for path in paths])
    images = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    return (images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def figures(folder: Path, image_size: int) -> dict[str, float]:
    """Logical / structural image AUROC and each defect kind's, of the part prior fitted on ``folder``'s normals
    (per kind as ``per_defect_kind.per_kind`` measures a saved run's)."""
    types = json.loads((folder / "defect_types.json").read_text())
    kinds = {"/".join(Path(image).parts[-2:]): kind for image, kind in types.items()}
    tests = sorted(folder.glob("test/*/*.png"))
    prior = PartNormalityPrior((image_size, image_size))
    prior.fit(prior.samples(_images(sorted(folder.glob("train/good/*.png")))))
    with torch.no_grad():
        scores = prior(_images(tests))
    keyed = {
        f"{path.parent.name}/{path.stem}": {"part": float(score)} for path, score in zip(tests, scores, strict=True)
    }
    table = per_kind(keyed, kinds)["part"]
    result = {f"{split} image AUROC": table.pop(f"(all {split})") for split in ("logical", "structural")}
    return result | {f"kind {kind}": auroc for kind, auroc in table.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="where the generated scenes go (reused if there)")
    parser.add_argument("--scenes", nargs="+", default=["box", "pins", "screws"])
    parser.add_argument("--data-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--cluster-on", choices=["shape", "all"], default="shape")
    parser.add_argument("--json", type=Path, help="also write every data seed's figures here")
    parser.add_argument("--small", action="store_true", help="the tests' small scenes (benchmarking/data.SMALL_DATA)")
    arguments = parser.parse_args(argv)
    shape_features = part_prior.SHAPE_FEATURES
    if arguments.cluster_on == "all":
        part_prior.SHAPE_FEATURES = part_prior.PART_FEATURES
    every = {}
    try:
        for scene in arguments.scenes:
            rows = []
            for seed in arguments.data_seeds:
                root = arguments.root / f"seed{seed}_{arguments.image_size}"
                (category,) = generate_scenes(root, [scene], arguments.image_size, seed, small=arguments.small)
                rows.append(figures(root / category, arguments.image_size))
                every[f"{scene}|data seed {seed}"] = rows[-1]
            means = {name: float(np.mean([row[name] for row in rows])) for name in rows[0]}
            print(f"{scene}: " + "  ".join(f"{name} {value:.3f}" for name, value in means.items()), flush=True)
    finally:
        part_prior.SHAPE_FEATURES = shape_features
    if arguments.json:
        arguments.json.write_text(json.dumps(every, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
