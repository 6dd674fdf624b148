"""Accuracy harness: Npgmf, its ablations and anomalib baselines on the same LOCO-layout data, several seeds.

    anomalib-npgmf benchmark accuracy --output results/accuracy --seeds 0 1 2 --scenes box pins \\
        --models npgmf npgmf_no_global npgmf_no_patch rd padim patchcore inp_former_pp inp_former efficient_ad \\
        npgmf_unified

(``python benchmarks/accuracy/run_accuracy.py ...`` in a clone is the same.) ``--root/--category`` reads real data
instead: MVTec LOCO categories get the LOCO table; MVTec AD (or VisA ``visa_pytorch``) categories have no
logical/structural split, so their row gives the image AUROC over all defects and the AU-PRO (each connected
ground-truth component a region, FPR <= 0.05) in the structural and mean columns, with the logical columns empty.

``npgmf_unified`` trains ONE Npgmf on all ``--scenes`` at once (``categories=[...]``, a ``MultiCategory``
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
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_npgmf.benchmarking import builders, failure_reason
from anomalib_npgmf.benchmarking.probe import PROBE_ROWS
from anomalib_npgmf.data import generate_demo_dataset
from anomalib_npgmf.metrics import LocoResults
from anomalib_npgmf.utils import atomic_write_text


def _npgmf(**overrides: object) -> Callable[[int, bool], object]:
    return lambda size, pretrained: builders.npgmf(size, pretrained, **overrides)


def _inp_former(ours: bool) -> Callable[[int, bool], object]:
    """INP-Former++ (ours) or anomalib's InpFormer, ViT-S/14-reg4, input cropped to a multiple of the patch."""

    def build(size: int, pretrained: bool) -> object:
        if pretrained:
            msg = "the INP-Former rows run with random init here; pass weights through the model's own config"
            raise RuntimeError(msg)
        crop = builders.crop_for_vit(size)
        return builders.inp_former_pp(size, crop) if ours else builders.anomalib_inp_former(size, crop)

    return build


def _anomalib(name: str) -> Callable[[int, bool], object]:
    return lambda size, pretrained: builders.anomalib_baseline(name, size, pretrained)


MODELS: dict[str, tuple[Callable[[int, bool], object], bool]] = {  # name -> (builder, trained for --epochs?)
    "npgmf": (_npgmf(), True),
    "npgmf_no_global": (_npgmf(use_global_prior=False), True),
    "npgmf_no_agc": (_npgmf(prior_channels=0), True),
    "npgmf_no_codebook": (_npgmf(codebook_size=0), True),
    "npgmf_no_sad": (_npgmf(use_structural=False), True),
    "npgmf_no_lad_local": (_npgmf(use_logical=False), True),
    "npgmf_no_patch": (_npgmf(use_patch_prior=False), True),
    "npgmf_only_priors": (_npgmf(fusion_weights=(0.0, 0.0, 1.0, 1.0)), True),
    "npgmf_only_reconstruction": (_npgmf(fusion_weights=(1.0, 1.0, 0.0, 0.0)), True),
    "npgmf_unified": (_npgmf(), True),  # built with categories=... by run_unified
    "npgmf_k32": (_npgmf(codebook_size=32), True),
    "npgmf_k512": (_npgmf(codebook_size=512), True),
    "rd": (_anomalib("ReverseDistillation"), True),
    "padim": (_anomalib("Padim"), False),
    "patchcore": (_anomalib("Patchcore"), False),
    "efficient_ad": (_anomalib("EfficientAd"), True),
    "inp_former_pp": (_inp_former(ours=True), True),
    "inp_former": (_inp_former(ours=False), True),
    **PROBE_ROWS,  # no-training pooled-Gaussian baseline (issue 18)
}
# anomalib's EfficientAd refuses any other training batch size.
TRAIN_BATCH_SIZE = {"efficient_ad": 1}
DEFAULT_TRAIN_BATCH_SIZE = 8
METRICS = (
    "logical_AUROC",
    "structural_AUROC",
    "mean_AUROC",
    "logical_AU-sPRO",
    "structural_AU-sPRO",
    "train_s",
    "ms_per_image",
)


def run_one(name: str, seed: int, root: Path, category: str, arguments: argparse.Namespace) -> dict[str, float]:
    """Train and score one model with one seed."""
    builder, _ = MODELS[name]
    seed_everything(seed, workers=True)
    model = builder(arguments.image_size, arguments.pretrained)
    batch_size = TRAIN_BATCH_SIZE.get(name, DEFAULT_TRAIN_BATCH_SIZE)
    if not is_loco_category(root / category):
        from anomalib_npgmf.data import MultiCategory

        datamodule = MultiCategory(
            categories=[str(root / category)], num_workers=0, train_batch_size=batch_size, eval_batch_size=16
        )
        train_seconds = _fit(name, seed, model, datamodule, arguments)
        return _score_without_split(model, datamodule.test_dataloader(), train_seconds)
    datamodule = builders.loco_datamodule(root, category, batch_size)
    train_seconds = _fit(name, seed, model, datamodule, arguments)
    return _score(model, datamodule.test_dataloader(), train_seconds)


def is_loco_category(folder: Path) -> bool:
    """Whether a category folder has MVTec LOCO's logical/structural test folders (else MVTec AD / VisA layout)."""
    return any((folder / "test" / name).is_dir() for name in ("logical_anomalies", "structural_anomalies"))


def _score_without_split(model: object, test_loader: object, train_seconds: float) -> dict[str, float]:
    """Image AUROC over all defects and AU-PRO (connected components as regions) for MVTec AD / VisA layouts."""
    import cv2
    import numpy as np

    from anomalib_npgmf.metrics import au_spro, rank_auroc

    model.eval()
    scores, labels, maps, regions = [], [], [], []
    start = time.perf_counter()
    with torch.no_grad():
        for batch in test_loader:
            output = model(batch.image)
            scores += output.pred_score.reshape(-1).tolist()
            labels += batch.gt_label.reshape(-1).tolist()
            for anomaly_map, mask in zip(output.anomaly_map, batch.gt_mask, strict=True):
                maps.append(anomaly_map.reshape(anomaly_map.shape[-2:]).numpy())
                count, components = cv2.connectedComponents(mask.numpy().astype(np.uint8))
                regions.append([(components == k, float((components == k).sum())) for k in range(1, count)])
    per_image = (time.perf_counter() - start) * 1000 / len(scores)
    auroc = rank_auroc(torch.tensor(scores), torch.tensor(labels))
    pro = au_spro(maps, regions, 0.05)
    return {
        "logical_AUROC": float("nan"),
        "structural_AUROC": auroc,
        "mean_AUROC": auroc,
        "logical_AU-sPRO": float("nan"),
        "structural_AU-sPRO": pro,
        "train_s": train_seconds,
        "ms_per_image": per_image,
    }


def run_unified(seed: int, root: Path, categories: list[str], arguments: argparse.Namespace) -> dict[str, dict]:
    """Train ONE Npgmf on all categories, score it per category: {category: figures}."""
    from anomalib_npgmf.data import MultiCategory

    seed_everything(seed, workers=True)
    model = builders.npgmf(arguments.image_size, arguments.pretrained, categories=categories)
    datamodule = MultiCategory(
        root=root, categories=categories, num_workers=0, train_batch_size=DEFAULT_TRAIN_BATCH_SIZE, eval_batch_size=16
    )
    train_seconds = _fit("npgmf_unified", seed, model, datamodule, arguments)
    results = {}
    for category in categories:
        single = builders.loco_datamodule(root, category)
        single.setup("test")
        results[category] = _score(model, single.test_dataloader(), train_seconds)
    return results


def _fit(name: str, seed: int, model: object, datamodule: object, arguments: argparse.Namespace) -> float:
    """Train with anomalib's Engine; the training seconds."""
    _, iterative = MODELS[name]
    engine = Engine(
        max_epochs=arguments.epochs if iterative else 1,
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=arguments.output / "runs" / f"{name}_{seed}",
        enable_progress_bar=False,
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    return time.perf_counter() - start


def _score(model: object, test_loader: object, train_seconds: float) -> dict[str, float]:
    """LOCO figures of a trained model on one category's test set."""
    model.eval()
    results = LocoResults()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in test_loader:
            output = model(batch.image)
            results.add(batch.image_path, output.pred_score, output.anomaly_map)
    per_image = (time.perf_counter() - start) * 1000 / len(results.image_paths)
    table = results.table()
    return {
        "logical_AUROC": table["logical"]["image_AUROC"],
        "structural_AUROC": table["structural"]["image_AUROC"],
        "mean_AUROC": table["mean"]["image_AUROC"],
        "logical_AU-sPRO": table["logical"]["AU-sPRO"],
        "structural_AU-sPRO": table["structural"]["AU-sPRO"],
        "train_s": train_seconds,
        "ms_per_image": per_image,
    }


def summarise(runs: list[dict]) -> tuple[str, str]:
    """Markdown and CSV of mean ± spread (sample standard deviation) per model and scene; failed runs say why."""
    groups = list(dict.fromkeys((run["model"], run["scene"]) for run in runs))
    header = "| model | scene | seeds | " + " | ".join(METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 3)]
    notes: list[str] = []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "scene", "seeds", *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")], "note"])
    for model, scene in groups:
        rows = [run for run in runs if run["model"] == model and run["scene"] == scene]
        good = [row for row in rows if not row.get("note")]
        if not good:
            note = rows[0]["note"]
            lines.append(f"| {model} | {scene} | 0 | " + " | ".join(["n/a"] * len(METRICS)) + " |")
            notes.append(f"- {model} ({scene}) could not run here: {note}")
            writer.writerow([model, scene, 0, *[""] * (2 * len(METRICS)), note])
            continue
        cells, values = [], []
        for metric in METRICS:
            data = [row[metric] for row in good]
            mean = statistics.fmean(data)
            spread = statistics.stdev(data) if len(data) > 1 else 0.0
            digits = 1 if metric in {"train_s", "ms_per_image"} else 3
            cells.append(f"{mean:.{digits}f} ± {spread:.{digits}f}")
            values += [f"{mean:.6f}", f"{spread:.6f}"]
        lines.append(f"| {model} | {scene} | {len(good)} | " + " | ".join(cells) + " |")
        writer.writerow([model, scene, len(good), *values, ""])
    if notes:
        lines += ["", *dict.fromkeys(notes)]
    return "\n".join(lines) + "\n", buffer.getvalue()


def _failed(name: str, scene: str, seed: int, error: Exception) -> dict:
    """A row for a run that could not be done here (e.g. a model that downloads weights), with the reason."""
    reason = failure_reason(error)
    print(f"   {name} could not run: {reason}", flush=True)
    return {"model": name, "scene": scene, "seed": seed, **dict.fromkeys(METRICS, float("nan")), "note": reason}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="anomalib-npgmf benchmark accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=Path("results/accuracy"))
    parser.add_argument(
        "--models",
        nargs="+",
        default=["npgmf", "npgmf_no_global", "rd", "padim"],
        choices=sorted(MODELS),
        metavar="NAME",
        help=f"rows to run, from: {', '.join(sorted(MODELS))}",
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
        counts = builders.SMALL_DATA if arguments.small else {}
        categories = []
        for scene in arguments.scenes:
            categories.append(f"demo_{scene}")
            generate_demo_dataset(
                root, categories[-1], image_size=arguments.image_size, seed=arguments.data_seed, scene=scene, **counts
            )
    else:
        if not arguments.category:
            parser.error("--root needs --category (one or more categories under it)")
        root, categories = arguments.root, list(arguments.category)
    runs = []
    for name in arguments.models:
        for seed in arguments.seeds:
            print(f"== {name} seed {seed}", flush=True)
            if name == "npgmf_unified":
                try:
                    per_category = run_unified(seed, root, categories, arguments)
                except Exception as error:
                    runs += [_failed(name, category, seed, error) for category in categories]
                    continue
                runs += [{"model": name, "scene": c, "seed": seed, **per_category[c]} for c in categories]
                continue
            for category in categories:
                try:
                    figures = run_one(name, seed, root, category, arguments)
                except Exception as error:
                    runs.append(_failed(name, category, seed, error))
                    continue
                runs.append({"model": name, "scene": category, "seed": seed, **figures})
                print({k: round(v, 4) if isinstance(v, float) else v for k, v in runs[-1].items()}, flush=True)
    markdown, table_csv = summarise(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["model", "scene", "seed", *METRICS, "note"], restval="")
    writer.writeheader()
    writer.writerows(runs)
    atomic_write_text(arguments.output / "accuracy.md", markdown)
    atomic_write_text(arguments.output / "accuracy.csv", table_csv)
    atomic_write_text(arguments.output / "runs.csv", buffer.getvalue())
    print(markdown)
    print(f"Written: {arguments.output / 'accuracy.md'} (.csv, runs.csv)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
