"""Rescore saved Npgmf runs that have the region prior with other ``region_weight`` values, without retraining.

The region prior is fitted once on the frozen encoder and its weight enters only the fusion at inference (training,
the priors and every part's normalisation are untouched), so one saved run answers it for every weight. Issue 18: the
region map lights a missing part's region, and at weight 1 it also lights a scratch's whole region; this measures
the trade-off, per weight: raw logical / structural image AUROC and AU-sPRO, and anomalib's pixel AUROC (every
pixel of every test image) with its structural-regions share.

    python benchmarks/accuracy/rescore_region_weight.py OUT_FOLDER --models Npgmf_region --seed 0 \
        [--weights 0.125 0.25 0.5 1] [--painting relative|absolute] [--json FILE]

``--painting`` repaints the region map relative to each image's median region (``region_relative``, the default
since 2026-12-04) or absolute, and refits the region map's normalisation on the run's validation normals: the region
prior is frozen, so this equals training with that setting. Without it the run is scored as the registry builds it
now; runs trained before ``region_relative`` existed were painted absolute (``--painting absolute`` reproduces them).
"""

import argparse
from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.models.npgmf.torch_model import fusion_shares

WEIGHTS = (0.125, 0.25, 0.5, 1.0)


def rescore(
    model: torch.nn.Module, folder: Path, category: str, weights=WEIGHTS, painting: str | None = None
) -> dict[str, dict[str, float]]:
    """{weight: LOCO figures and pixel AUROC} with the region map at each weight (on ``fusion_weights``' scale),
    painted as ``painting`` says (``None``: as the model is)."""
    net = model.model
    if net.region_prior is None:
        msg = f"{folder}: this run has no region prior (train it with use_region_prior: true)"
        raise ValueError(msg)
    if painting is not None:
        repaint(model, saved_runs.calibration_loaders(folder, category), relative=painting == "relative")
    trained = dict(net.fusion_weights)
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    figures = {}
    try:
        for weight in weights:
            net.fusion_weights["region"] = fusion_shares(_fusion_weights(model), region_weight=weight)["region"]
            figures[str(weight)] = saved_runs.map_figures(model, datamodule)
    finally:
        net.fusion_weights.clear()
        net.fusion_weights.update(trained)
    return figures


def repaint(model: torch.nn.Module, loaders: list, relative: bool) -> None:
    """Paint the region map relative (or absolute) and refit its normalisation on the normal images of
    ``loaders``, the other parts' too (the same images and weights give them the same constants back)."""
    model.model.region_prior.relative = bool(relative)
    model.model.region_norm.fitted.fill_(False)
    with torch.no_grad():
        model.fit_normalization(loaders)


def _fusion_weights(model: torch.nn.Module) -> list[float]:
    """The ``fusion_weights`` the model was built with (the scale ``region_weight`` is on)."""
    return list(model.hparams.get("fusion_weights", (1.0, 1.0, 1.0, 1.0)))


def show(key: str, figures: dict[str, dict[str, float]]) -> None:
    for weight, row in figures.items():
        print(f"{key} weight {weight}: " + "  ".join(f"{name} {value:.3f}" for name, value in row.items()), flush=True)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", nargs="+", type=float, default=list(WEIGHTS))
    parser.add_argument("--painting", choices=("relative", "absolute"))


def main(argv: list[str] | None = None) -> int:
    def measure(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
        return rescore(model, folder, category, tuple(arguments.weights), arguments.painting)

    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv, ["Npgmf_region"], options)


if __name__ == "__main__":
    raise SystemExit(main())
