"""Accuracy harness: Npgmf, its ablations and anomalib baselines on the same LOCO-layout data, several seeds.

    anomalib-npgmf benchmark accuracy --output results/accuracy --seeds 0 1 2 --scenes box pins \\
        --models Npgmf Npgmf_no_global Npgmf_no_patch ReverseDistillation Padim Patchcore InpFormerPlusPlus \\
        InpFormer EfficientAd Npgmf_unified

(``python benchmarks/accuracy/run_accuracy.py ...`` in a clone is the same; the old names ``npgmf``, ``rd``,
``inp_former_pp`` ... still work.) ``--root/--category`` reads real data instead: MVTec LOCO categories get the LOCO
table; MVTec AD (or VisA ``visa_pytorch``) categories have no logical/structural split, so their row gives the image
AUROC over all defects and the AU-PRO (each connected ground-truth component a region, FPR <= 0.05) in the
structural and mean columns, with the logical columns empty.

``Npgmf_unified`` trains ONE Npgmf on all ``--scenes`` at once (``categories=[...]``, a ``MultiCategory``
datamodule) and reports it per scene, beside the one-model-per-scene rows. A model that cannot run here (e.g. one
that must download weights) gets a row saying why instead of figures.

Generates the synthetic data (``--scene box|pins``) unless ``--root/--category`` point at a real MVTec LOCO category,
trains every model with the same image size, init regime (random unless ``--pretrained``) and epoch budget, scores
the test set with the exact LOCO metrics, and writes ``accuracy.md`` / ``accuracy.csv`` (mean and spread over seeds)
plus ``runs.csv`` (every run). Figures: image AUROC logical / structural / mean, AU-sPRO logical / structural,
train seconds, ms per test image.
"""

import argparse
import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anomalib_npgmf.utils import atomic_write_text

from . import failure_reason, registry
from .data import generate_scenes, is_loco_category, loco_datamodule
from .records import ACCURACY_METRICS, NAN, AccuracyRun
from .report import summarise
from .training import fit

METRICS = ACCURACY_METRICS  # the figure columns, by the name scripts that pool runs.csv files import
DEFAULT_MODELS = ("Npgmf", "Npgmf_no_global", "ReverseDistillation", "Padim")
UNIFIED = "Npgmf_unified"
EVAL_BATCH_SIZE = 16


@dataclass
class Budget:
    """What every model of a run gets alike: training epochs, input size, init regime, and where runs are kept."""

    epochs: int
    image_size: int
    pretrained: bool
    runs_folder: Path


def run_one(name: str, seed: int, root: Path, category: str, budget: Budget) -> dict[str, float]:
    """Train and score one model with one seed on one category."""
    from lightning.pytorch import seed_everything

    spec = registry.MODELS[name]
    seed_everything(seed, workers=True)
    model = spec.build(budget.image_size, budget.pretrained)
    if not is_loco_category(root / category):
        from anomalib_npgmf.data import MultiCategory

        datamodule = MultiCategory(
            categories=[str(root / category)],
            num_workers=0,
            train_batch_size=spec.train_batch_size,
            eval_batch_size=EVAL_BATCH_SIZE,
        )
        train_seconds = _fit(name, seed, model, datamodule, budget)
        return _score_without_split(model, datamodule.test_dataloader(), train_seconds)
    datamodule = loco_datamodule(root, category, spec.train_batch_size)
    train_seconds = _fit(name, seed, model, datamodule, budget)
    return _score(model, datamodule.test_dataloader(), train_seconds)


def run_unified(seed: int, root: Path, categories: list[str], budget: Budget) -> dict[str, dict[str, float]]:
    """Train ONE Npgmf on all categories, score it per category: {category: figures}."""
    from lightning.pytorch import seed_everything

    from anomalib_npgmf.data import MultiCategory

    seed_everything(seed, workers=True)
    model = registry.npgmf(budget.image_size, budget.pretrained, categories=categories)
    datamodule = MultiCategory(
        root=root,
        categories=categories,
        num_workers=0,
        train_batch_size=registry.MODELS[UNIFIED].train_batch_size,
        eval_batch_size=EVAL_BATCH_SIZE,
    )
    train_seconds = _fit(UNIFIED, seed, model, datamodule, budget)
    results = {}
    for category in categories:
        single = loco_datamodule(root, category)
        single.setup("test")
        results[category] = _score(model, single.test_dataloader(), train_seconds)
    return results


def _fit(name: str, seed: int, model: Any, datamodule: Any, budget: Budget) -> float:
    """Train with anomalib's Engine (one epoch for models that fill a memory bank); the training seconds."""
    epochs = budget.epochs if registry.MODELS[name].iterative else 1
    _, seconds = fit(model, datamodule, epochs, budget.runs_folder / f"{name}_{seed}")
    return seconds


def _figures(table: dict[str, dict[str, float]], train_seconds: float, per_image_ms: float) -> dict[str, float]:
    """A LOCO table as the harness's figures, in ``ACCURACY_METRICS`` order."""
    return {
        "logical_AUROC": table["logical"]["image_AUROC"],
        "structural_AUROC": table["structural"]["image_AUROC"],
        "mean_AUROC": table["mean"]["image_AUROC"],
        "logical_AU-sPRO": table["logical"]["AU-sPRO"],
        "structural_AU-sPRO": table["structural"]["AU-sPRO"],
        "train_s": train_seconds,
        "ms_per_image": per_image_ms,
    }


def raw_output(model: Any, images: Any) -> Any:
    """The network's own scores and maps, without anomalib's post-processor.

    Its min-max normalisation clamps to [0, 1] around a threshold fitted on the validation images; on LOCO-layout data
    those are all normal, so every score above threshold + half their range becomes 1.0, test scores tie and the
    image AUROC drops (measured on the held-out scenes: by up to 0.09, enough to reorder models). Ranking metrics
    (AUROC, AU-sPRO) need the raw scores.
    """
    return model.model(model.pre_processor(images))


def _score(model: Any, test_loader: Any, train_seconds: float) -> dict[str, float]:
    """LOCO figures of a trained model on one category's test set."""
    import torch

    from anomalib_npgmf.metrics import LocoResults

    model.eval()
    results = LocoResults()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in test_loader:
            output = raw_output(model, batch.image)
            results.add(batch.image_path, output.pred_score, output.anomaly_map)
    per_image = (time.perf_counter() - start) * 1000 / len(results.image_paths)
    return _figures(results.table(), train_seconds, per_image)


def _score_without_split(model: Any, test_loader: Any, train_seconds: float) -> dict[str, float]:
    """Image AUROC over all defects and AU-PRO (connected components as regions) for MVTec AD / VisA layouts."""
    import cv2
    import numpy as np
    import torch

    from anomalib_npgmf.metrics import au_spro, rank_auroc

    model.eval()
    scores, labels, maps, regions = [], [], [], []
    start = time.perf_counter()
    with torch.no_grad():
        for batch in test_loader:
            output = raw_output(model, batch.image)
            scores += output.pred_score.reshape(-1).tolist()
            labels += batch.gt_label.reshape(-1).tolist()
            for anomaly_map, mask in zip(output.anomaly_map, batch.gt_mask, strict=True):
                maps.append(anomaly_map.reshape(anomaly_map.shape[-2:]).numpy())
                count, components = cv2.connectedComponents(mask.numpy().astype(np.uint8))
                regions.append([(components == k, float((components == k).sum())) for k in range(1, count)])
    per_image = (time.perf_counter() - start) * 1000 / len(scores)
    auroc = rank_auroc(torch.tensor(scores), torch.tensor(labels))
    pro = au_spro(maps, regions, 0.05)
    split = {"image_AUROC": auroc, "AU-sPRO": pro}
    table = {"logical": {"image_AUROC": NAN, "AU-sPRO": NAN}, "structural": split, "mean": split}
    return _figures(table, train_seconds, per_image)


def _failed(name: str, scene: str, seed: int, error: Exception) -> AccuracyRun:
    """A row for a run that could not be done here (e.g. a model that downloads weights), with the reason."""
    reason = failure_reason(error)
    print(f"   {name} could not run: {reason}", flush=True)
    return AccuracyRun(name, scene, seed, note=reason)


def run_all(
    models: list[str], seeds: list[int], root: Path, categories: list[str], budget: Budget
) -> list[AccuracyRun]:
    """Every model x seed x category; a failure is a row with its reason."""
    runs: list[AccuracyRun] = []
    for name in models:
        for seed in seeds:
            print(f"== {name} seed {seed}", flush=True)
            if name == UNIFIED:
                try:
                    per_category = run_unified(seed, root, categories, budget)
                except Exception as error:
                    runs += [_failed(name, category, seed, error) for category in categories]
                    continue
                runs += [AccuracyRun(name, category, seed, per_category[category]) for category in categories]
                continue
            for category in categories:
                try:
                    runs.append(AccuracyRun(name, category, seed, run_one(name, seed, root, category, budget)))
                except Exception as error:
                    runs.append(_failed(name, category, seed, error))
                    continue
                print({k: round(v, 4) if isinstance(v, float) else v for k, v in runs[-1].as_row().items()}, flush=True)
    return runs


def write_reports(output: Path, runs: list[AccuracyRun]) -> None:
    """accuracy.md / accuracy.csv (mean ± spread over seeds) and runs.csv (every run), atomically."""
    rows = [run.as_row() for run in runs]
    markdown, table_csv = summarise(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["model", "scene", "seed", *ACCURACY_METRICS, "note"], restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output / "accuracy.md", markdown)
    atomic_write_text(output / "accuracy.csv", table_csv)
    atomic_write_text(output / "runs.csv", buffer.getvalue())
    print(markdown)
    print(f"Written: {output / 'accuracy.md'} (.csv, runs.csv)")


def _model_name(value: str) -> str:
    try:
        return registry.resolve(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    """``anomalib-npgmf benchmark accuracy ...``; 0 when the tables are written."""
    parser = argparse.ArgumentParser(
        prog="anomalib-npgmf benchmark accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=Path("results/accuracy"))
    parser.add_argument(
        "--models",
        nargs="+",
        type=_model_name,
        default=list(DEFAULT_MODELS),
        metavar="NAME",
        help=f"rows to run, from: {', '.join(registry.MODELS)} (old spellings such as rd, npgmf_no_global work too)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--scenes", "--scene", nargs="+", default=["box"], help="generated scenes (box, pins, screws)")
    parser.add_argument("--root", type=Path, help="real LOCO-layout root (skips generation)")
    parser.add_argument("--category", nargs="+", help="categories under --root")
    parser.add_argument("--pretrained", action="store_true", help="pretrained backbones (needs local weights)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="tiny generated set (for tests)")
    arguments = parser.parse_args(argv)
    if arguments.root is None:
        root = arguments.output / "data"
        categories = generate_scenes(root, arguments.scenes, arguments.image_size, arguments.data_seed, arguments.small)
    else:
        if not arguments.category:
            parser.error("--root needs --category (one or more categories under it)")
        root, categories = arguments.root, list(arguments.category)
    budget = Budget(arguments.epochs, arguments.image_size, arguments.pretrained, arguments.output / "runs")
    runs = run_all(arguments.models, arguments.seeds, root, categories, budget)
    write_reports(arguments.output, runs)
    return 0
