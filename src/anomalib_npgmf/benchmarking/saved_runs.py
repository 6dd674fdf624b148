"""Re-reading an accuracy run's saved checkpoints (no retraining): the shared part of the rescoring scripts.

An accuracy ``--output`` folder holds ``data/<category>/`` and ``runs/<model>_<seed>/.../<category>/.../model.ckpt``.
The scripts in ``benchmarks/accuracy/`` (raw vs clamped rescoring, per-defect-kind AUROC, pixel AUROC per map) walk
the same folders x categories x models and make the same pass over each test set, each with its own measurement.
"""

import argparse
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anomalib_npgmf.ground_truth import anomaly_type_of
from anomalib_npgmf.metrics import LocoResults, rank_auroc

from . import registry
from .data import loco_datamodule


def add_arguments(parser: argparse.ArgumentParser, default_models: list[str] | None = None) -> None:
    """Folders, models, seed, image size, categories and an optional JSON output."""
    parser.add_argument("folders", nargs="+", type=Path, help="accuracy-harness --output folders")
    parser.add_argument("--models", nargs="+", required=default_models is None, default=default_models)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--categories", nargs="+", help="only these categories (default: every one under data/)")
    parser.add_argument("--json", type=Path, help="also write {model|category|folder: figures} here")


def load_run(folder: Path, name: str, seed: int, category: str, image_size: int) -> Any:
    """The model of one saved run, restored from its checkpoint, in eval mode (``StopIteration``: no such run)."""
    runs = folder / "runs"
    run = next(path for path in (runs / f"{name}_{seed}", runs / f"{name.lower()}_{seed}") if path.exists())
    checkpoint = next(run.rglob(f"{category}/**/model.ckpt"))
    model = registry.MODELS[registry.resolve(name)].build(image_size, False)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"])
    return model.eval()


def calibration_loaders(folder: Path, category: str) -> list:
    """A run's validation normals (LOCO's ``validation/good``): what its normalisation was fitted on, so a script that
    refits a part's normalisation fits it as training did."""
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("fit")
    return [datamodule.val_dataloader()]


def each_run(arguments: argparse.Namespace) -> Iterator[tuple[Path, str, str, Any]]:
    """(folder, category, model name, restored model) for every saved run the arguments name; missing runs skipped."""
    for folder in arguments.folders:
        categories = arguments.categories or sorted(p.name for p in (folder / "data").iterdir() if p.is_dir())
        for category in categories:
            for name in arguments.models:
                try:
                    model = load_run(folder, name, arguments.seed, category, arguments.image_size)
                except StopIteration:
                    continue
                yield folder, category, registry.resolve(name), model


@dataclass
class ScoredTestSet:
    """A restored model's outputs over a whole test set: the LOCO figures' input, and the maps and ground truth
    flattened to (images, pixels) for figures pooled over every pixel."""

    results: LocoResults
    maps: torch.Tensor  # the model's anomaly map
    extra_maps: dict[str, torch.Tensor]  # by name, what ``score_test_set``'s ``extra_maps`` returned
    masks: torch.Tensor  # bool, every region of an image; all False for a test set without masks
    kinds: list[str]  # "good", "logical" or "structural", per image


def score_test_set(
    model: Any, datamodule: Any, extra_maps: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None
) -> ScoredTestSet:
    """The pass every rescoring script makes over a set-up datamodule's test set with the model as it now is (one
    loop, so the scripts score the same images the same way); ``extra_maps(pre-processed images)`` adds the caller's
    own maps, e.g. one part's."""
    results = LocoResults()
    maps: list[torch.Tensor] = []
    extra: dict[str, list[torch.Tensor]] = {}
    masks: list[torch.Tensor] = []
    kinds: list[str] = []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            images = model.pre_processor(batch.image)
            output = model.model(images)
            results.add(batch.image_path, output.pred_score, output.anomaly_map)
            maps.append(output.anomaly_map.reshape(output.anomaly_map.shape[0], -1).float())
            for name, value in (extra_maps(images) if extra_maps is not None else {}).items():
                extra.setdefault(name, []).append(value.reshape(value.shape[0], -1).float())
            mask = batch.gt_mask if batch.gt_mask is not None else torch.zeros_like(output.anomaly_map)
            masks.append(mask.reshape(mask.shape[0], -1) > 0)
            kinds.extend(anomaly_type_of(path) for path in batch.image_path)
    extra_flat = {name: torch.cat(values) for name, values in extra.items()}
    return ScoredTestSet(results, torch.cat(maps), extra_flat, torch.cat(masks), kinds)


def map_figures(model: Any, datamodule: Any) -> dict[str, float]:
    """Raw logical / structural image AUROC and AU-sPRO of a set-up datamodule's test set, anomalib's pixel AUROC
    (every pixel of every test image) and the same over the good and structural images only: what the scripts that
    change a map read."""
    return figures_of(score_test_set(model, datamodule))


def figures_of(scored: ScoredTestSet) -> dict[str, float]:
    """:func:`map_figures` of a test set already scored (a script that reads more from the same pass)."""
    table = scored.results.table()
    figures = {
        f"{kind} {name}": float(table[kind][name])
        for kind in ("logical", "structural")
        for name in ("image_AUROC", "AU-sPRO")
    }
    pixels, target = scored.maps, scored.masks
    figures["pixel AUROC"] = rank_auroc(pixels.reshape(-1), target.reshape(-1))
    structural = torch.tensor([kind in ("good", "structural") for kind in scored.kinds])
    figures["pixel AUROC, structural"] = rank_auroc(pixels[structural].reshape(-1), target[structural].reshape(-1))
    return figures


def write_json(path: Path | None, figures: dict) -> None:
    """The figures as JSON, if a path was given."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=1) + "\n")


def run_script(
    description: str,
    measure: Callable[..., Any],
    show: Callable[[str, Any], None],
    argv: list[str] | None = None,
    default_models: list[str] | None = None,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """A rescoring script's ``main``: ``measure(model, folder, category)`` for every saved run the command line names,
    ``show(key, figures)`` each as it comes, all of them to ``--json``. Keys are ``model|category|folder name``.
    ``options(parser)`` adds a script's own options; ``measure`` then also gets the parsed arguments."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser, default_models)
    if options is not None:
        options(parser)
    arguments = parser.parse_args(argv)
    figures = {}
    for folder, category, name, model in each_run(arguments):
        key = f"{name}|{category}|{folder.name}"
        figures[key] = measure(model, folder, category, arguments) if options else measure(model, folder, category)
        show(key, figures[key])
    write_json(arguments.json, figures)
    return 0
