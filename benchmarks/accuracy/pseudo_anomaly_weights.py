"""Choose the invariant prior's weight per run from pseudo-anomalies made of the run's own validation normals, then
read the real test set at that weight (rescoring; nothing retrained).

Issue 18: which image-level prior is the stronger differs by scene (the CI guard's pins scene wants the global prior,
box the invariant one), and no fixed weight serves both. A weight set per dataset without anomalous images would need
a stand-in for anomalies; this measures whether patch-level pseudo-anomalies are one. Each validation normal gives
three: a square from another normal pasted in, a square erased to the image's median colour, a square with its colour
channels rolled (sides 1/6 to 1/3 of the image, places and partners from a seeded generator). The weight is the one
whose image-level score (``global share x (global + V x invariant)``) best separates them from the normals, ties going
to the run's own weight:

    python benchmarks/accuracy/pseudo_anomaly_weights.py OUT_FOLDER --models Npgmf_invariant --seed 0 \
        --image-size 128 [--json FILE]

Prints the pseudo-anomaly AUROC per weight, the weight chosen, and raw logical / structural test AUROC at that weight
and at the run's own.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rescore_local_score import image_aurocs, weighted_scores

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import rank_auroc

WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)
KINDS = ("pasted", "erased", "recoloured")


def pseudo_anomalies(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
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
                altered[index][square] = images[index].flatten(1).median(dim=1).values[:, None, None]
            else:
                altered[index][square] = images[index][square].roll(1, dims=0)
        made.append(altered)
    return torch.cat(made)


def chosen_weight(separation: dict[float, float], trained: float) -> float:
    """The weight with the largest pseudo-anomaly AUROC; ties (to 1e-6) go to the one nearest the trained weight."""
    return max(separation, key=lambda weight: (round(separation[weight], 6), -abs(np.log(weight / trained))))


def image_level_distances(model: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """The global and invariant priors' normalised distances of pre-processed ``images``."""
    net = model.model
    with torch.no_grad():
        raw = net.unsmoothed_maps(images)
    return {part: net.normalizer(part)(raw[part][:, 0, 0, 0]).double().numpy() for part in ("global", "invariant")}


def measure(model: torch.nn.Module, folder: Path, category: str) -> dict:
    net = model.model
    if net.invariant_prior is None:
        msg = f"{folder}: this run has no invariant prior (use a run of Npgmf_invariant)"
        raise ValueError(msg)
    normals = torch.cat(
        [batch.image for loader in saved_runs.calibration_loaders(folder, category) for batch in loader]
    )
    normal = image_level_distances(model, model.pre_processor(normals))
    altered = image_level_distances(model, model.pre_processor(pseudo_anomalies(normals)))
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


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv, ["Npgmf_invariant"])


if __name__ == "__main__":
    raise SystemExit(main())
