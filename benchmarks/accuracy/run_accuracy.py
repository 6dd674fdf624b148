"""Accuracy harness: Npgmf, its ablations and anomalib baselines on the same LOCO-layout data, several seeds.

    python benchmarks/accuracy/run_accuracy.py --output results/accuracy --seeds 0 1 2 \
        --models npgmf npgmf_no_global npgmf_no_agc npgmf_no_codebook npgmf_no_sad rd padim

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

from anomalib_npgmf.data import MVTecLOCO, generate_demo_dataset
from anomalib_npgmf.metrics import LocoResults
from anomalib_npgmf.utils import atomic_write_text


def _npgmf(**overrides: object) -> Callable[[int, bool], object]:
    def build(size: int, pretrained: bool) -> object:
        from anomalib_npgmf import Npgmf

        settings = {
            "backbone": "resnet18",
            "pre_trained": pretrained,
            "image_size": size,
            "oce_strides": (2, 1),
            "bottleneck_channels": 128,
            "codebook_size": 128,
            "prior_channels": 32,
            "visualizer": False,
        }
        return Npgmf(**{**settings, **overrides})

    return build


def _anomalib(name: str) -> Callable[[int, bool], object]:
    def build(size: int, pretrained: bool) -> object:
        from anomalib import models

        cls = getattr(models, name)
        kwargs = {
            "pre_trained": pretrained,
            "visualizer": False,
            "pre_processor": cls.configure_pre_processor((size, size)),
        }
        if name in {"ReverseDistillation", "Padim", "Patchcore"}:
            kwargs["backbone"] = "resnet18"
        if name == "Patchcore":
            kwargs["coreset_sampling_ratio"] = 0.01
            kwargs["layers"] = ("layer2", "layer3")
        return cls(**kwargs)

    return build


MODELS: dict[str, tuple[Callable[[int, bool], object], bool]] = {  # name -> (builder, trained for --epochs?)
    "npgmf": (_npgmf(), True),
    "npgmf_no_global": (_npgmf(use_global_prior=False), True),
    "npgmf_no_agc": (_npgmf(prior_channels=0), True),
    "npgmf_no_codebook": (_npgmf(codebook_size=0), True),
    "npgmf_no_sad": (_npgmf(use_structural=False), True),
    "npgmf_no_lad_local": (_npgmf(use_logical=False), True),
    "npgmf_k32": (_npgmf(codebook_size=32), True),
    "npgmf_k512": (_npgmf(codebook_size=512), True),
    "rd": (_anomalib("ReverseDistillation"), True),
    "padim": (_anomalib("Padim"), False),
    "patchcore": (_anomalib("Patchcore"), False),
}
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
    builder, iterative = MODELS[name]
    seed_everything(seed, workers=True)
    model = builder(arguments.image_size, arguments.pretrained)
    datamodule = MVTecLOCO(
        root=root, category=category, num_workers=0, train_batch_size=8, eval_batch_size=16, loco_report=False
    )
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
    train_seconds = time.perf_counter() - start
    model.eval()
    results = LocoResults()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
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
    """Markdown and CSV of mean ± spread (sample standard deviation) per model."""
    models = list(dict.fromkeys(run["model"] for run in runs))
    header = "| model | seeds | " + " | ".join(METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 2)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "seeds", *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")]])
    for model in models:
        rows = [run for run in runs if run["model"] == model]
        cells, values = [], []
        for metric in METRICS:
            data = [row[metric] for row in rows]
            mean = statistics.fmean(data)
            spread = statistics.stdev(data) if len(data) > 1 else 0.0
            digits = 1 if metric in {"train_s", "ms_per_image"} else 3
            cells.append(f"{mean:.{digits}f} ± {spread:.{digits}f}")
            values += [f"{mean:.6f}", f"{spread:.6f}"]
        lines.append(f"| {model} | {len(rows)} | " + " | ".join(cells) + " |")
        writer.writerow([model, len(rows), *values])
    return "\n".join(lines) + "\n", buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("results/accuracy"))
    parser.add_argument(
        "--models", nargs="+", default=["npgmf", "npgmf_no_global", "rd", "padim"], choices=sorted(MODELS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--scene", default="box", help="generated scene (box or pins)")
    parser.add_argument("--root", type=Path, help="real LOCO-layout root (skips generation)")
    parser.add_argument("--category", help="category under --root")
    parser.add_argument("--pretrained", action="store_true", help="pretrained backbones (needs local weights)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="tiny generated set (for tests)")
    arguments = parser.parse_args(argv)
    if arguments.root is None:
        category = f"demo_{arguments.scene}"
        counts = {"n_train": 12, "n_val": 4, "n_test_good": 4, "n_test_per_defect": 1} if arguments.small else {}
        root = arguments.output / "data"
        generate_demo_dataset(
            root, category, image_size=arguments.image_size, seed=arguments.data_seed, scene=arguments.scene, **counts
        )
    else:
        root, category = arguments.root, arguments.category
    runs = []
    for name in arguments.models:
        for seed in arguments.seeds:
            print(f"== {name} seed {seed}", flush=True)
            runs.append({"model": name, "seed": seed, **run_one(name, seed, root, category, arguments)})
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in runs[-1].items()}, flush=True)
    markdown, table_csv = summarise(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["model", "seed", *METRICS])
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
