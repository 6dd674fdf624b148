"""What a part-level prior would add to Npgmf's image score, measured from saved runs before building one.

Issue 18: the no-training ``probe_parts`` row (connected parts counted per kind, ``benchmarking/part_probe.py``)
beats Npgmf on the held-out scenes. This adds its score to Npgmf's, each standardised on the run's validation
normals (mean and standard deviation, what a prior's normalisation would be fitted on), as
``z(Npgmf) + W x z(probe_parts)``, and prints raw logical / structural image AUROC per weight ``W`` (``W = 0``: Npgmf
alone). Both rows must have been trained into the same harness output with the same seed:

    anomalib-npgmf benchmark accuracy --output OUT --scenes box pins screws --data-seed D --seeds 0 1 2 --epochs 8 \
        --image-size 128 --models Npgmf probe_parts
    python benchmarks/accuracy/fuse_part_probe.py OUT --models Npgmf --seed S [--weights 0 0.5 1 2 4] [--json FILE]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import rank_auroc

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def raw_scores(model: torch.nn.Module, loader: object) -> np.ndarray:
    """Image scores before anomalib's post-processor (which clamps them and would tie the ranks)."""
    scores = []
    with torch.no_grad():
        for batch in loader:
            scores.append(model.model(model.pre_processor(batch.image)).pred_score.double())
    return torch.cat(scores).numpy()


def fused_figures(
    model: torch.nn.Module, probe: torch.nn.Module, folder: Path, category: str, weights: tuple[float, ...] = WEIGHTS
) -> dict[str, dict[str, float]]:
    """{"W": {"logical": raw image AUROC, "structural": ...}} of ``z(model) + W x z(probe)`` on the test set."""
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("fit")
    datamodule.setup("test")
    standardised, kinds = [], []
    for each in (model, probe):
        normals = raw_scores(each, datamodule.val_dataloader())
        scored = saved_runs.score_test_set(each, datamodule)
        test = np.asarray(scored.results.scores, dtype=np.float64)
        standardised.append((test - normals.mean()) / max(float(normals.std()), 1e-12))
        kinds = scored.kinds
    figures = {}
    for weight in weights:
        fused = standardised[0] + weight * standardised[1]
        row = {}
        for kind in ("logical", "structural"):
            chosen = [index for index, each in enumerate(kinds) if each in {"good", kind}]
            row[kind] = rank_auroc(fused[chosen], np.array([kinds[index] == kind for index in chosen]))
        figures[f"{weight:g}"] = row
    return figures


def rescore(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
    """The run's figures, fused with the ``probe_parts`` run of the same seed in the same output folder."""
    try:
        probe = saved_runs.load_run(folder, "probe_parts", arguments.seed, category, arguments.image_size)
    except StopIteration:
        msg = f"{folder} has no probe_parts run with seed {arguments.seed} for {category}: train it with --models"
        raise SystemExit(msg) from None
    return fused_figures(model, probe, folder, category, tuple(arguments.weights))


def show(key: str, figures: dict[str, dict[str, float]]) -> None:
    cells = "  ".join(f"W={weight}: {row['logical']:.3f} / {row['structural']:.3f}" for weight, row in figures.items())
    print(f"{key:<40} {cells}", flush=True)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", nargs="+", type=float, default=list(WEIGHTS), help="W values (0: Npgmf alone)")


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], rescore, show, argv, options=options)


if __name__ == "__main__":
    raise SystemExit(main())
