"""Re-reading an accuracy run's saved checkpoints (no retraining): the shared part of the rescoring scripts.

An accuracy ``--output`` folder holds ``data/<category>/`` and ``runs/<model>_<seed>/.../<category>/.../model.ckpt``.
The scripts in ``benchmarks/accuracy/`` (raw vs clamped rescoring, per-defect-kind AUROC, pixel AUROC per map) walk
the same folders x categories x models, each with its own measurement.
"""

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from . import registry


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


def write_json(path: Path | None, figures: dict) -> None:
    """The figures as JSON, if a path was given."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=1) + "\n")


def run_script(
    description: str,
    measure: Callable[[Any, Path, str], Any],
    show: Callable[[str, Any], None],
    argv: list[str] | None = None,
    default_models: list[str] | None = None,
) -> int:
    """A rescoring script's ``main``: ``measure(model, folder, category)`` for every saved run the command line names,
    ``show(key, figures)`` each as it comes, all of them to ``--json``. Keys are ``model|category|folder name``."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser, default_models)
    arguments = parser.parse_args(argv)
    figures = {}
    for folder, category, name, model in each_run(arguments):
        key = f"{name}|{category}|{folder.name}"
        figures[key] = measure(model, folder, category)
        show(key, figures[key])
    write_json(arguments.json, figures)
    return 0
