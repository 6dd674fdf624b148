"""Choose the invariant prior's weight per run from pseudo-anomalies made of the run's own validation normals, then
read the real test set at that weight (rescoring; nothing retrained).

Issue 18: which image-level prior is the stronger differs by scene (the CI guard's pins scene wants the global prior,
box the invariant one), and no fixed weight serves both. A weight set per dataset without anomalous images needs a
stand-in for anomalies; this measures two:

- ``--pseudo patches``: each validation normal gives three, a square from another normal pasted in, a square erased to
  the image's median colour, a square with its colour channels rolled (sides 1/6 to 1/3 of the image);
- ``--pseudo parts`` (default): each gives two, one of its parts removed and one duplicated. A part is a connected
  blob of pixels far from the image's median colour (the background), small enough not to be a frame or wall; a
  removed part is painted in the median colour, a duplicate is pasted where nothing lies. Images without a part (or
  without room for a copy) give none.

Places and partners come from a seeded generator. The weight is the one whose image-level score (``global share x
(global + V x invariant)``) best separates the pseudo-anomalies from the normals, ties going to the run's own weight:

    python benchmarks/accuracy/pseudo_anomaly_weights.py OUT_FOLDER --models Npgmf_invariant --seed 0 \
        --image-size 128 [--pseudo parts|patches] [--json FILE]

Prints the pseudo-anomaly AUROC per weight, the weight chosen, and raw logical / structural test AUROC at that weight
and at the run's own.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rescore_local_score import image_aurocs, weighted_scores

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import rank_auroc

WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)
KINDS = ("pasted", "erased", "recoloured")
PART_CONTRAST = 0.25  # RGB distance (0-1 scale) from the median colour that makes a pixel part of a part
PART_MIN_AREA = 6  # pixels; smaller blobs are texture noise


def median_colour(image: torch.Tensor) -> torch.Tensor:
    """(C, 1, 1) per-channel median of one (C, H, W) image: its background colour on these scenes."""
    return image.flatten(1).median(dim=1).values[:, None, None]


def patch_anomalies(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(3N, C, H, W): each image with one square pasted from another image, erased, recoloured (``KINDS`` order)."""
    generator = torch.Generator().manual_seed(seed)
    count, _, height, width = images.shape

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=generator))

    made = []
    for kind in KINDS:
        altered = images.clone()
        for index in range(count):
            side = draw(height // 6, height // 3)
            top, left = draw(0, height - side), draw(0, width - side)
            square = (slice(None), slice(top, top + side), slice(left, left + side))
            if kind == "pasted":
                partner = (index + draw(1, count)) % count
                source_top, source_left = draw(0, height - side), draw(0, width - side)
                altered[index][square] = images[
                    partner, :, source_top : source_top + side, source_left : source_left + side
                ]
            elif kind == "erased":
                altered[index][square] = median_colour(images[index])
            else:
                altered[index][square] = images[index][square].roll(1, dims=0)
        made.append(altered)
    return torch.cat(made)


def image_parts(image: torch.Tensor) -> tuple[np.ndarray, list[tuple[int, tuple[slice, slice]]], torch.Tensor]:
    """(labelled foreground, [(label, bounding box)] of its parts, median colour (C, 1, 1)) of one (C, H, W) image.
    Blobs as tall or wide as half the image (frames, walls) are not parts."""
    median = median_colour(image)
    labels, _ = ndimage.label(((image - median).norm(dim=0) > PART_CONTRAST).numpy())
    height, width = labels.shape
    parts = [
        (label, box)
        for label, box in enumerate(ndimage.find_objects(labels), start=1)
        if (labels[box] == label).sum() >= PART_MIN_AREA
        and box[0].stop - box[0].start < height // 2
        and box[1].stop - box[1].start < width // 2
    ]
    return labels, parts, median


def part_anomalies(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(M, C, H, W): each image with one of its parts removed, then each with one duplicated (M <= 2N: images
    without a part, or without room for a copy, give none)."""
    rng = np.random.default_rng(seed)
    found = [image_parts(image) for image in images]
    made = []
    for kind in ("removed", "duplicated"):
        for image, (labels, parts, median) in zip(images, found, strict=True):
            if not parts:
                continue
            label, box = parts[rng.integers(len(parts))]
            mask = ndimage.binary_dilation(labels == label, iterations=1)
            altered = image.clone()
            if kind == "removed":
                altered[:, torch.from_numpy(mask)] = median[:, 0]
                made.append(altered)
                continue
            occupied = ndimage.binary_dilation(labels > 0, iterations=2)
            rows, columns = box[0].stop - box[0].start, box[1].stop - box[1].start
            for _ in range(50):
                top, left = rng.integers(0, labels.shape[0] - rows), rng.integers(0, labels.shape[1] - columns)
                if not occupied[top : top + rows, left : left + columns].any():
                    shape = torch.from_numpy(mask[box])
                    altered[:, top : top + rows, left : left + columns][:, shape] = image[:, box[0], box[1]][:, shape]
                    made.append(altered)
                    break
    if not made:
        msg = "no image of the validation set has a part (a small blob off the median colour) to remove or duplicate"
        raise ValueError(msg)
    return torch.stack(made)


PSEUDO = {"patches": patch_anomalies, "parts": part_anomalies}


def chosen_weight(separation: dict[float, float], trained: float) -> float:
    """The weight with the largest pseudo-anomaly AUROC; ties (to 1e-6) go to the one nearest the trained weight."""
    return max(separation, key=lambda weight: (round(separation[weight], 6), -abs(np.log(weight / trained))))


def image_level_distances(model: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """The global and invariant priors' normalised distances of pre-processed ``images``."""
    net = model.model
    with torch.no_grad():
        raw = net.unsmoothed_maps(images)
    return {part: net.normalizer(part)(raw[part][:, 0, 0, 0]).double().numpy() for part in ("global", "invariant")}


def measure(model: torch.nn.Module, folder: Path, category: str, pseudo: str = "parts") -> dict:
    net = model.model
    if net.invariant_prior is None:
        msg = f"{folder}: this run has no invariant prior (use a run of Npgmf_invariant)"
        raise ValueError(msg)
    normals = torch.cat(
        [batch.image for loader in saved_runs.calibration_loaders(folder, category) for batch in loader]
    )
    normal = image_level_distances(model, model.pre_processor(normals))
    altered = image_level_distances(model, model.pre_processor(PSEUDO[pseudo](normals)))
    labels = np.r_[np.zeros(len(normals)), np.ones(len(altered["global"]))]
    both = {part: np.r_[normal[part], altered[part]] for part in normal}
    share = net.fusion_weights["global"]
    separation = {
        weight: rank_auroc(share * (both["global"] + weight * both["invariant"]), labels) for weight in WEIGHTS
    }
    trained = float(model.hparams["invariant_weight"])
    weight = chosen_weight(separation, trained)
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    local = net.local_score_weight
    scores, kinds = weighted_scores(model, datamodule, (local,), (weight, trained))
    return {
        "pseudo-anomaly AUROC by weight": separation,
        "pseudo-anomaly AUROC alone": {part: rank_auroc(values, labels) for part, values in both.items()},
        "chosen weight": weight,
        "test at the chosen weight": image_aurocs(scores[f"local x{local:g} invariant x{weight:g}"], kinds),
        "test at the trained weight": image_aurocs(scores[f"local x{local:g} invariant x{trained:g}"], kinds),
    }


def show(key: str, figures: dict) -> None:
    separation = "  ".join(
        f"{weight:g}: {value:.3f}" for weight, value in figures["pseudo-anomaly AUROC by weight"].items()
    )
    chosen, trained = figures["test at the chosen weight"], figures["test at the trained weight"]
    print(
        f"{key}  pseudo {separation}  chosen {figures['chosen weight']:g}: {chosen['logical']:.3f} / "
        f"{chosen['structural']:.3f}  trained: {trained['logical']:.3f} / {trained['structural']:.3f}",
        flush=True,
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pseudo", choices=list(PSEUDO), default="parts", help="which pseudo-anomalies (default parts)"
    )


def main(argv: list[str] | None = None) -> int:
    def measure_with(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
        return measure(model, folder, category, arguments.pseudo)

    return saved_runs.run_script(__doc__.splitlines()[0], measure_with, show, argv, ["Npgmf_invariant"], options)


if __name__ == "__main__":
    raise SystemExit(main())
