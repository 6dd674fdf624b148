"""Rescore saved Npgmf runs with other ``fusion_weights``, without retraining.

The fusion weights enter only inference: training, the priors and every part's map normalisation are untouched, so
one saved run answers for every choice. Issue 18: the patch prior (per-position Gaussians) localises scratches far
better than the reconstruction maps it is averaged with (box: structural AU-sPRO 0.35 fused, higher with more patch
weight); this measures the trade-off per choice.

Each part's normalised, smoothed map (and each image-level value) is computed once per test image; a choice is then
their weighted sum, as the model computes it (the blur is linear with unit gain and the normalisation affine, so
this equals the model built with the weights up to float rounding; ``tests/benchmarking/test_rescore_fusion_weights.py``
checks it):

    python benchmarks/accuracy/rescore_fusion_weights.py OUT_FOLDER --models Npgmf --seed 0 \\
        [--weights 1,1,1,1 0,0.5,1,2] [--part-map-weights 4 8] [--map-only] [--json FILE]

Prints, per choice (local logical, structural, global, patch weights), raw logical / structural image AUROC and
AU-sPRO and anomalib's pixel AUROC over every pixel of every test image. With ``--part-map-weights`` (a run with the
part map), each choice at each part map weight, keyed "<choice> part map <weight>"; without, the run's own.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import LocoResults, rank_auroc
from anomalib_npgmf.models.npgmf.torch_model import IMAGE_LEVEL, fusion_shares

DEFAULT_CHOICES = ((1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 2.0), (0.0, 0.5, 1.0, 2.0), (1.0, 0.5, 1.0, 2.0))


@dataclass
class PartScores:
    """Every part's normalised contribution over a test set, ready to be weighted."""

    scored: saved_runs.ScoredTestSet  # the model as built: paths, masks, kinds; ``extra_maps`` holds the parts
    local: list[str]  # parts with a map (N, H·W) in ``scored.extra_maps``
    image_level: list[str]  # parts with one value per image, (N, 1) in ``scored.extra_maps``
    side: tuple[int, int]  # (H, W) of the maps


def part_scores(model: torch.nn.Module, datamodule) -> PartScores:
    """One pass over the test set: each active part's normalised, smoothed map and each image-level value."""
    net = model.model
    if net.global_in_map:
        msg = "rescoring fusion weights needs the global prior out of the map (global_in_map: false)"
        raise ValueError(msg)
    if net.local_score_norm is not None or net.image_level_fusion != "sum":
        msg = "rescoring fusion weights needs a run with calibrated_local_score: false and image_level_fusion: sum"
        raise ValueError(msg)

    def normalised_parts(images: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = {}
        for part, raw in net.unsmoothed_maps(images).items():
            if part in IMAGE_LEVEL:
                parts[part] = net.image_level_normalised(part, raw[:, 0, 0, 0]).reshape(-1, 1)
            else:
                parts[part] = net.blur(net.map_normalised(part, raw))
        return parts

    scored = saved_runs.score_test_set(model, datamodule, normalised_parts)
    local = [part for part in scored.extra_maps if part not in IMAGE_LEVEL]
    image_level = [part for part in scored.extra_maps if part in IMAGE_LEVEL]
    side = tuple(int(size) for size in net.input_size)
    return PartScores(scored, local, image_level, side)


def fused(
    parts: PartScores,
    shares: dict[str, float],
    score_parts: tuple[str, ...],
    local_weight: float = 1.0,
    score_shares: dict[str, float] | None = None,
) -> tuple[torch.Tensor, ...]:
    """(maps (N, H·W), image scores (N,)) of the model with these shares, as ``NpgmfModel.forward`` computes them
    (``local_weight``: the run's ``local_score_weight``, which scales the maps' maximum in the image score;
    ``score_shares``: the image score's own, as ``score_fusion_weights`` sets them; ``None``: ``shares``)."""
    maps = sum(shares[part] * parts.scored.extra_maps[part] for part in parts.local)
    scored_local = [part for part in parts.local if part in score_parts]
    weights = shares if score_shares is None else score_shares
    if len(scored_local) == len(parts.local) and score_shares is None:
        scores = local_weight * maps.amax(dim=1)
    elif scored_local:
        scores = local_weight * sum(weights[part] * parts.scored.extra_maps[part] for part in scored_local).amax(dim=1)
    else:
        scores = torch.zeros(maps.shape[0])
    for part in parts.image_level:
        if part in score_parts:
            scores = scores + weights[part] * parts.scored.extra_maps[part][:, 0]
    return maps, scores


def figures(parts: PartScores, maps: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    """Raw LOCO image AUROC and AU-sPRO per kind, and pixel AUROC over every pixel of every test image."""
    results = LocoResults()
    results.add(parts.scored.results.image_paths, scores, maps.reshape(-1, *parts.side))
    table = results.table()
    row = {
        f"{kind} {name}": float(table[kind][name])
        for kind in ("logical", "structural")
        for name in ("image_AUROC", "AU-sPRO")
    }
    row["pixel AUROC"] = rank_auroc(maps.reshape(-1), parts.scored.masks.reshape(-1))
    return row


def rescore(
    model: torch.nn.Module,
    folder: Path,
    category: str,
    choices=DEFAULT_CHOICES,
    part_map_weights: tuple[float, ...] | None = None,
    map_only: bool = False,
) -> dict[str, dict[str, float]]:
    """{"a,b,c,d": figures} for each choice of ``fusion_weights``, the run's invariant / region / part weights kept;
    with ``part_map_weights``, {"a,b,c,d part map w": figures} for each choice at each part map weight. A choice
    moves the image score too, unless ``map_only`` or the run scores with its own ``score_fusion_weights``: then
    the image score stays the run's (as ``score_fusion_weights`` keeps it)."""
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    parts = part_scores(model, datamodule)
    invariant = model.model.current_invariant_weight  # chosen at fit time, or as built
    region = float(model.hparams.get("region_weight", 0.0))
    part = model.model.current_part_weight  # chosen at fit time, or as built
    if part_map_weights and not model.model.part_in_map:
        msg = f"{folder}: --part-map-weights needs a run with the part map (part_in_map: true)"
        raise ValueError(msg)
    own_score = map_only or model.model.score_weights is not model.model.fusion_weights
    result = {}
    for choice in choices:
        for part_map in part_map_weights or (part_map_weight(model),):
            shares = fusion_shares(choice, invariant, region, part, part_map)
            score_shares = None
            if own_score:
                score_shares = fusion_shares(model.model._score_weights_built_with, invariant, region, part, part_map)
            maps, scores = fused(parts, shares, model.model.score_parts, model.model.local_score_weight, score_shares)
            key = ",".join(f"{weight:g}" for weight in choice)
            result[f"{key} part map {part_map:g}" if part_map_weights else key] = figures(parts, maps, scores)
    return result


def part_map_weight(model: torch.nn.Module) -> float:
    """The run's part map weight (0 when it has no part map), which a rescoring keeps."""
    return float(model.hparams.get("part_map_weight", 0.0)) if model.model.part_in_map else 0.0


def show(key: str, rows: dict[str, dict[str, float]]) -> None:
    for choice, row in rows.items():
        print(f"{key} weights {choice}: " + "  ".join(f"{name} {value:.3f}" for name, value in row.items()), flush=True)


def _choice(text: str) -> tuple[float, ...]:
    values = tuple(float(value) for value in text.split(","))
    if len(values) not in (3, 4) or min(values) < 0 or sum(values) <= 0:
        msg = f"--weights takes three or four non-negative numbers with a positive sum, e.g. 1,1,1,1; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", nargs="+", type=_choice, default=list(DEFAULT_CHOICES))
    parser.add_argument("--part-map-weights", nargs="+", type=float, help="part map weights (default: the run's)")
    parser.add_argument("--map-only", action="store_true", help="the image score stays the run's")


def main(argv: list[str] | None = None) -> int:
    def measure(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
        part_map_weights = tuple(arguments.part_map_weights) if arguments.part_map_weights else None
        return rescore(model, folder, category, tuple(arguments.weights), part_map_weights, arguments.map_only)

    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv, ["Npgmf"], options)


if __name__ == "__main__":
    raise SystemExit(main())
