"""Choose the invariant prior's weight per run from pseudo-anomalies made of the run's own validation normals, then
read the real test set at that weight (rescoring; nothing retrained).

Issue 18: which image-level prior is the stronger differs by scene (the CI guard's pins scene wants the global prior,
box the invariant one), and no fixed weight serves both. A weight set per dataset without anomalous images needs a
stand-in for anomalies; this measures two:

- ``--pseudo patches``: each validation normal gives three, a square from another normal pasted in, a square erased to
  the image's median colour, a square with its colour channels rolled (sides 1/6 to 1/3 of the image);
- ``--pseudo parts`` (default): each gives two, one of its parts removed and one duplicated
  (``anomalib_npgmf/models/npgmf/pseudo_anomalies.py``, seeded by each image's pixels). These are exactly the
  distances and the rule ``choose_invariant_weight`` uses at fit time (``Npgmf.pseudo_anomaly_distances``), so the
  chosen weight is the one a model trained with it would pick.

Places and partners of patches come from a seeded generator. The weight is the one the model's own rule picks
(``pseudo_anomalies.switch_weight``): the one whose image-level score (``global + V x invariant``, normalised) best
separates the pseudo-anomalies from the normals, if it leads the run's own weight by more than one standard error of
the paired AUROC difference (since 2026-12-06; ``pseudo_anomaly_weights_2026-12-05.json`` took the best one outright):

    python benchmarks/accuracy/pseudo_anomaly_weights.py OUT_FOLDER --models Npgmf_invariant --seed 0 \
        --image-size 128 [--pseudo parts|patches] [--json FILE]

Prints the pseudo-anomaly AUROC per weight, the weight chosen, and raw logical / structural test AUROC at that weight
and at the run's own.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rescore_local_score import image_aurocs, weighted_scores

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import rank_auroc
from anomalib_npgmf.models.npgmf.pseudo_anomalies import CANDIDATE_WEIGHTS, choose_weight, median_colour

KINDS = ("pasted", "erased", "recoloured")


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


PSEUDO = ("parts", "patches")


def pseudo_rows(model: torch.nn.Module, folder: Path, category: str, pseudo: str) -> torch.Tensor:
    """(N, 3) rows (global distance, invariant distance, is pseudo-anomaly) of the run's calibration normals and their
    pseudo-anomalies: for ``parts``, exactly what ``choose_invariant_weight`` reads at fit time."""
    loaders = saved_runs.calibration_loaders(folder, category)
    if pseudo == "parts":
        return model.pseudo_anomaly_distances(loaders)
    normals = torch.cat([batch.image for loader in loaders for batch in loader])
    images = model.pre_processor(torch.cat([normals, patch_anomalies(normals)]))
    distances = model.model.image_level_distances(images)
    labels = torch.cat([torch.zeros(len(normals)), torch.ones(len(images) - len(normals))])
    return torch.stack([distances["global"], distances["invariant"], labels], dim=1).double()


def measure(model: torch.nn.Module, folder: Path, category: str, pseudo: str = "parts") -> dict:
    net = model.model
    if net.invariant_prior is None:
        msg = f"{folder}: this run has no invariant prior (use a run of Npgmf_invariant)"
        raise ValueError(msg)
    rows = pseudo_rows(model, folder, category, pseudo)
    configured = net.built_weight("invariant")
    choice = choose_weight(rows[:, 0], rows[:, 1], rows[:, 2], CANDIDATE_WEIGHTS, configured)  # the model's own rule
    if choice is None:
        msg = f"{folder}: no pseudo-anomalies could be made from this run's validation normals"
        raise ValueError(msg)
    separation, weight = choice.separations, choice.weight
    trained = net.current_invariant_weight  # the run's own (chosen at fit time, or as built)
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    local = net.local_score_weight
    scores, kinds = weighted_scores(model, datamodule, (local,), (weight, trained))
    return {
        "pseudo-anomaly AUROC by weight": separation,
        "pseudo-anomaly AUROC alone": {
            part: rank_auroc(rows[:, column], rows[:, 2]) for column, part in enumerate(("global", "invariant"))
        },
        "pseudo-anomalies": int(rows[:, 2].sum()),
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
    parser.add_argument("--pseudo", choices=PSEUDO, default="parts", help="which pseudo-anomalies (default parts)")


def main(argv: list[str] | None = None) -> int:
    def measure_with(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
        return measure(model, folder, category, arguments.pseudo)

    return saved_runs.run_script(__doc__.splitlines()[0], measure_with, show, argv, ["Npgmf_invariant"], options)


if __name__ == "__main__":
    raise SystemExit(main())
