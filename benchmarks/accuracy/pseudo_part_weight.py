"""The part prior's weight chosen from pseudo-anomalies (``choose_part_weight``) against the configured one, per saved
run: what the rule saw, what it chose, and the real test set at both weights (rescoring; nothing retrained).

Issue 18: on screws at 256 px (data seed 0) the part prior alone scores 0.967 logical, but the fused image score 0.848
at the configured ``part_weight`` 4; the other image-level priors' spread on normal images buries the part counts.
``choose_part_weight`` weighs the part prior as ``choose_invariant_weight`` weighs the invariant one: on each held-out
normal with one of its parts removed and one duplicated (``pseudo_anomalies.part_anomalies``), the image-level score
``global + V x invariant + P x part`` for each candidate ``P``, switching from the configured weight only when the
best leads it by more than one paired standard error (``pseudo_anomalies.switch_weight``).

Per run this recomputes the rows and the rule with the model's own code (``Npgmf.pseudo_anomaly_distances``,
``NpgmfModel.part_free_image_level_score``), checks the choice against the one the run made at fit time (when it was
trained with ``choose_part_weight``), and rescores the test set at the chosen and at the configured weight
(``rescore_part_weight.rescore``, per defect kind too). The part weight enters the image score only, so one run
answers for both.

    python benchmarks/accuracy/pseudo_part_weight.py OUT_FOLDER [OUT_FOLDER ...] --models Npgmf --seed 0 \
        --image-size 128 [--json FILE]
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rescore_part_weight import rescore

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.metrics import rank_auroc
from anomalib_npgmf.models.npgmf.fitting import pseudo_columns


def measure(model: torch.nn.Module, folder: Path, category: str) -> dict:
    net = model.model
    if net.part_prior is None or "part" not in net.score_parts or net.image_level_fusion != "sum":
        msg = f"{folder}: this run's image score has no part prior summed into it"
        raise ValueError(msg)
    rows = model.pseudo_anomaly_distances(saved_runs.calibration_loaders(folder, category))
    choice = model.weight_choice("part", rows)  # the model's own rule, setting nothing
    if choice is None:
        msg = f"{folder}: no part-level pseudo-anomalies could be made from this run's held-out normals"
        raise ValueError(msg)
    columns = pseudo_columns(rows)
    labels = columns["is_pseudo_anomaly"]
    others, part = net.part_free_image_level_score(columns), columns["part"]
    configured, chosen = net.built_weight("part"), choice.weight
    if net.choose_part_weight and chosen != net.current_part_weight:
        msg = f"{folder}: the rule picks {chosen:g} but the run chose {net.current_part_weight:g} at fit time"
        raise RuntimeError(msg)
    test = rescore(model, folder, category, tuple(sorted({chosen, configured})), by_kind=True)
    return {
        "pseudo-anomaly AUROC by weight": choice.separations,
        "part prior alone": rank_auroc(part, labels),
        "the other priors alone": rank_auroc(others, labels),
        "normals": int((labels == 0).sum()),
        "pseudo-anomalies": int(labels.sum()),
        "configured weight": configured,
        "chosen weight": chosen,
        "lead": choice.lead,
        "standard error": choice.error,
        "test at the chosen weight": test[f"{chosen:g}"],
        "test at the configured weight": test[f"{configured:g}"],
    }


def show(key: str, figures: dict) -> None:
    separation = "  ".join(f"{w:g}: {v:.3f}" for w, v in figures["pseudo-anomaly AUROC by weight"].items())
    chosen, configured = figures["test at the chosen weight"], figures["test at the configured weight"]
    print(
        f"{key}  pseudo ({figures['pseudo-anomalies']} vs {figures['normals']}) {separation}  part alone "
        f"{figures['part prior alone']:.3f}, others {figures['the other priors alone']:.3f}  chosen "
        f"{figures['chosen weight']:g}: logical {chosen['logical image_AUROC']:.3f} structural "
        f"{chosen['structural image_AUROC']:.3f}  at {figures['configured weight']:g}: "
        f"{configured['logical image_AUROC']:.3f} / {configured['structural image_AUROC']:.3f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv, ["Npgmf"])


if __name__ == "__main__":
    raise SystemExit(main())
