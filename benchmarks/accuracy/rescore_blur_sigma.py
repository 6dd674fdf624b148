"""Rescore saved Npgmf runs with another map blur (``blur_sigma``), the normalisation refitted, without retraining.

Issue 18: the fused map is blurred with sigma 4 px whatever the image size, the value ReverseDistillation and
EfficientAD use at 256 px; at 128 px that is twice the smoothing relative to the objects, and a scratch's peak is
spread over a quarter of the image. The blur touches no trained weight and no prior; it enters each part's map before
its normalisation is fitted and the fused map before the image score's maximum. So setting another blur, refitting
every part's normalisation on the run's validation normals (``calibration_loaders``, what training fitted it on) and
scoring the test set equals training with that blur (``tests/benchmarking/test_rescore_blur_sigma.py``). Per sigma:
raw logical / structural image AUROC and AU-sPRO, anomalib's pixel AUROC and its structural-images share.

    python benchmarks/accuracy/rescore_blur_sigma.py OUT_FOLDER --models Npgmf --seed 0 \
        [--sigmas 1 2 3 4] [--json FILE]

The model is left with the blur and normalisation it had.
"""

import argparse
from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.models.common import SeparableGaussianBlur
from anomalib_npgmf.models.npgmf.torch_model import PARTS

SIGMAS = (1.0, 2.0, 3.0, 4.0)


def set_blur(model: torch.nn.Module, sigma: float, loaders: list) -> None:
    """Blur ``model``'s maps with ``sigma`` and refit every part's normalisation (and the local score's calibration,
    if any) on the normal images of ``loaders``; a chosen invariant weight is kept (it reads no map)."""
    net = model.model
    net.blur = SeparableGaussianBlur(sigma=float(sigma)).to(next(net.parameters()).device)
    for normalizer in (*(net.normalizer(part) for part in PARTS), net.local_score_norm):
        if normalizer is not None:
            normalizer.fitted.fill_(False)
    with torch.no_grad():
        model.fit_normalization(loaders)


def rescore(model: torch.nn.Module, folder: Path, category: str, sigmas=SIGMAS) -> dict[str, dict[str, float]]:
    """{sigma: LOCO figures and pixel AUROC} with the maps blurred at each sigma."""
    loaders = saved_runs.calibration_loaders(folder, category)
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    trained_sigma = model.model.blur.sigma
    figures = {}
    try:
        for sigma in sigmas:
            set_blur(model, sigma, loaders)
            figures[f"{float(sigma):g}"] = saved_runs.map_figures(model, datamodule)
    finally:
        set_blur(model, trained_sigma, loaders)
    return figures


def show(key: str, figures: dict[str, dict[str, float]]) -> None:
    for sigma, row in figures.items():
        print(f"{key} sigma {sigma}: " + "  ".join(f"{name} {value:.3f}" for name, value in row.items()), flush=True)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS))


def main(argv: list[str] | None = None) -> int:
    def measure(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
        return rescore(model, folder, category, tuple(arguments.sigmas))

    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv, ["Npgmf"], options)


if __name__ == "__main__":
    raise SystemExit(main())
