"""Rescore saved Npgmf runs with other ``score_parts`` (which parts make the image score), without retraining.

Issue 18 found that the noisy local maps can drown the image-level evidence in the fused image score, and that image
and pixel scores need not come from the same map. ``score_parts`` changes only the image score (the map, the
normalisation and training are untouched), so one saved run answers it for every choice:

    python benchmarks/accuracy/rescore_score_parts.py OUT_FOLDER --models Npgmf_invariant --seed 0 \
        --image-size 256 [--json FILE]

Prints raw logical / structural image AUROC per choice (``all`` = the model as trained).
"""

from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule

# None: every active part (the default); the others read image-level priors only, or one of them.
CHOICES: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "image-level priors": ("global", "invariant"),
    "global": ("global",),
    "invariant": ("invariant",),
}


def rescore(model: torch.nn.Module, folder: Path, category: str) -> dict[str, dict[str, float]]:
    """{choice: {"logical": raw image AUROC, "structural": ...}} for the choices this run's active parts allow."""
    trained_parts = model.model.score_parts
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    figures = {}
    for choice, parts in CHOICES.items():
        if parts is not None and not set(parts) <= set(trained_parts):
            continue
        model.model.score_parts = trained_parts if parts is None else parts
        table = saved_runs.score_test_set(model, datamodule).results.table()
        figures[choice] = {kind: float(table[kind]["image_AUROC"]) for kind in ("logical", "structural")}
    model.model.score_parts = trained_parts
    return figures


def show(key: str, figures: dict[str, dict[str, float]]) -> None:
    cells = "  ".join(f"{choice}: {row['logical']:.3f} / {row['structural']:.3f}" for choice, row in figures.items())
    print(f"{key:<40} {cells}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], rescore, show, argv)


if __name__ == "__main__":
    raise SystemExit(main())
