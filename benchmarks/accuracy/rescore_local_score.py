"""Rescore saved Npgmf runs with the local maps' maximum entering the image score otherwise, without retraining.

Issue 18: at 256 px the fused map's maximum decides the image score and drowns the image-level priors. Two ways to
change how it enters, neither touching the map, training or any part's normalisation, so one saved run answers both:

- ``calibrated``: the model's ``calibrated_local_score`` (the maximum normalised on the normal images' per-image
  maxima), fitted on the run's validation normals as training would fit it;
- ``local xW``: the image score ``W * local maximum + image-level priors`` (``W`` absolute, whatever the run's own
  ``local_score_weight``; ``W = 0``: the image-level priors only, ``score_parts`` of them). ``max`` is the model's
  score as the registry builds it now, and ``calibrated`` is calibrated at its weight;
- ``local xW invariant xV`` (with ``--invariant-weights``, for runs with the invariant prior): the same with the
  invariant prior's ``invariant_weight`` set to ``V``.

    python benchmarks/accuracy/rescore_local_score.py OUT_FOLDER --models Npgmf --seed 0 --image-size 256 \
        [--local-weights 0.5 0.25 0] [--invariant-weights 1 2 4] [--json FILE]

Prints raw logical / structural image AUROC per choice.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import rank_auroc
from anomalib_npgmf.models.common import QuantileMapNormalizer

LOCAL_WEIGHTS = (0.5, 0.25, 0.0)


def calibrate(model: torch.nn.Module, loaders: list) -> None:
    """Switch ``calibrated_local_score`` on in a restored model and fit it on the normal images of ``loaders`` (the
    other parts are refitted too: the same images and weights give them the same constants back)."""
    model.model.local_score_norm = QuantileMapNormalizer()
    with torch.no_grad():
        model.fit_normalization(loaders)


def image_aurocs(scores: np.ndarray, kinds: list[str]) -> dict[str, float]:
    """{"logical" | "structural": image AUROC of that kind's images against the good ones}."""
    figures = {}
    for kind in ("logical", "structural"):
        chosen = [index for index, each in enumerate(kinds) if each in {"good", kind}]
        figures[kind] = rank_auroc(scores[chosen], np.array([kinds[index] == kind for index in chosen]))
    return figures


def _score_parts(model: torch.nn.Module, datamodule, parts: tuple[str, ...]) -> np.ndarray:
    """The test set's image scores with the image score reading only ``parts`` (the model is left as it was)."""
    trained_parts = model.model.score_parts
    model.model.score_parts = parts
    try:
        return np.asarray(saved_runs.score_test_set(model, datamodule).results.scores, dtype=np.float64)
    finally:
        model.model.score_parts = trained_parts


def weighted_scores(
    model: torch.nn.Module, datamodule, local_weights, invariant_weights=()
) -> tuple[dict[str, np.ndarray], list[str]]:
    """({"max" | "local xW" | "local xW invariant xV": image scores of the test set}, kinds): ``W * local maximum +
    image-level priors``, the local maximum being the trained score minus the image-level priors' (``score_parts`` of
    them), divided by the run's own ``local_score_weight`` (so ``W`` is absolute: a run trained at 0.25 rescored at
    ``W = 1`` is the model built with 1). With ``invariant_weights``, the invariant prior's share is also rescaled
    from the run's ``invariant_weight`` to ``V`` (shares are linear in the weight: ``fusion_shares``)."""
    net = model.model
    trained = saved_runs.score_test_set(model, datamodule)
    everything = np.asarray(trained.results.scores, dtype=np.float64)
    scores = {"max": everything}
    image_level = tuple(part for part in net.score_parts if part in net.image_level_parts)
    if image_level and local_weights:
        priors = _score_parts(model, datamodule, image_level)
        maximum = (everything - priors) / net.local_score_weight
        for weight in local_weights:
            scores[f"local x{weight:g}"] = weight * maximum + priors
        if invariant_weights and "invariant" in image_level:
            invariant = _score_parts(model, datamodule, ("invariant",))
            trained_weight = net.current_invariant_weight  # chosen at fit time, or as built
            for weight in local_weights:
                for share in invariant_weights:
                    rescaled = priors - invariant + share / trained_weight * invariant
                    scores[f"local x{weight:g} invariant x{share:g}"] = weight * maximum + rescaled
    return scores, trained.kinds


def rescore(
    model: torch.nn.Module, folder: Path, category: str, local_weights=LOCAL_WEIGHTS, invariant_weights=()
) -> dict[str, dict[str, float]]:
    """{"max" | "local xW" | "calibrated": {"logical": raw image AUROC, "structural": ...}}."""
    if model.model.local_score_norm is not None:
        msg = f"{folder}: this run was trained with calibrated_local_score; rescore a run trained without it"
        raise ValueError(msg)
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    scores, kinds = weighted_scores(model, datamodule, local_weights, invariant_weights)
    figures = {choice: image_aurocs(values, kinds) for choice, values in scores.items()}
    calibrate(model, saved_runs.calibration_loaders(folder, category))
    figures["calibrated"] = image_aurocs(np.asarray(saved_runs.score_test_set(model, datamodule).results.scores), kinds)
    return figures


def show(key: str, figures: dict[str, dict[str, float]]) -> None:
    cells = "  ".join(f"{choice}: {row['logical']:.3f} / {row['structural']:.3f}" for choice, row in figures.items())
    print(f"{key:<34} {cells}", flush=True)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local-weights", nargs="+", type=float, default=list(LOCAL_WEIGHTS))
    parser.add_argument(
        "--invariant-weights", nargs="+", type=float, default=[], help="also rescale the invariant prior's weight"
    )


def main(argv: list[str] | None = None) -> int:
    def measure(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
        return rescore(model, folder, category, tuple(arguments.local_weights), tuple(arguments.invariant_weights))

    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv, ["Npgmf"], options)


if __name__ == "__main__":
    raise SystemExit(main())
