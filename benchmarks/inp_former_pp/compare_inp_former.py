"""Side by side: our InpFormerPlusPlus (both variants) against anomalib's InpFormer, same data and budget.

    python benchmarks/inp_former_pp/compare_inp_former.py --output results/inp_compare --epochs 5 --seeds 0

Same generated LOCO-layout category, same ViT-S/14-reg4 architecture with random initialisation (no weights can be
downloaded here; anomalib's InpFormer always asks timm for pretrained weights, so it is built inside
``anomalib_npgmf.utils.compat.timm_random_init``), same resize/crop, same batch size and epochs, same seed. Models
and names are those of ``anomalib_npgmf.benchmarking.registry``. Scores are taken at the input size for both
(``score_size=None`` for ours, anomalib never resizes). Writes ``compare.md`` (table), ``runs.csv`` (every run) and
``lr_curves.csv`` (learning rate of every optimiser step of every run), each atomically.
"""

import argparse
import csv
import io
import time
from collections.abc import Callable
from pathlib import Path

import torch
from anomalib.engine import Engine
from anomalib.post_processing import PostProcessor
from lightning.pytorch import Callback, seed_everything

from anomalib_npgmf.benchmarking import registry
from anomalib_npgmf.data import MVTecLOCORegions, generate_demo_dataset
from anomalib_npgmf.utils import atomic_write_text


class LearningRateRecorder(Callback):
    """Learning rate used by each optimiser step."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        del pl_module, batch, batch_idx
        self.rates.append(float(trainer.optimizers[0].param_groups[0]["lr"]))


# the benchmark registry's names and builders, with this script's own crop size
MODELS: dict[str, Callable[[int, int], object]] = {
    "InpFormerPlusPlus": lambda size, crop: registry.inp_former_pp(size, crop, "inp_former_pp"),
    "InpFormerPlusPlus_inp_former": lambda size, crop: registry.inp_former_pp(size, crop, "inp_former"),
    "InpFormer": registry.anomalib_inp_former,
}


def run_one(name: str, seed: int, args: argparse.Namespace, root: Path) -> tuple[dict, list[float]]:
    seed_everything(seed, workers=True)
    model = MODELS[name](args.image_size, args.crop_size)
    # One post-processor for all three, anomalib's (ours default to RankPreservingPostProcessor, whose untied values
    # would favour our rows on the same maps): the table compares models, as it did when measured.
    model.post_processor = PostProcessor()
    datamodule = MVTecLOCORegions(
        root=root,
        category=args.category,
        train_batch_size=args.batch_size,
        eval_batch_size=16,
        num_workers=0,
        loco_report=False,
    )
    recorder = LearningRateRecorder()
    engine = Engine(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        default_root_dir=args.output / "runs" / f"{name.replace(' ', '_')}_{seed}",
        logger=False,
        callbacks=[recorder],
        enable_progress_bar=False,
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    row = {
        "model": name,
        "seed": seed,
        "image_AUROC": float(metrics["image_AUROC"]),
        "pixel_AUROC": float(metrics.get("pixel_AUROC", float("nan"))),
        "train_seconds": train_seconds,
        "steps": len(recorder.rates),
        "lr_first_step": recorder.rates[0],
        "lr_max": max(recorder.rates),
        "lr_last_step": recorder.rates[-1],
    }
    return row, recorder.rates


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Generated LOCO-layout category `{args.category}` (scene `{args.scene}`), {registry.INP_BACKBONE} "
        "random init, "
        f"resize {args.image_size} -> crop {args.crop_size}, batch {args.batch_size}, {args.epochs} epochs, "
        f"seeds {args.seeds}, CPU ({torch.get_num_threads()} threads).",
        "",
        "| model | seed | image AUROC | pixel AUROC | train s | steps | LR step 0 | LR max | LR last step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['seed']} | {r['image_AUROC']:.3f} | {r['pixel_AUROC']:.3f} | {r['train_seconds']:.1f} | "
        f"{r['steps']} | {r['lr_first_step']:.2e} | {r['lr_max']:.2e} | {r['lr_last_step']:.2e} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("results/inp_former_compare"))
    parser.add_argument("--root", type=Path, default=None, help="dataset root (default: generate under --output)")
    parser.add_argument("--category", default="demo_box")
    parser.add_argument("--scene", default="box", help="scene of the generated data")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--crop-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    root = args.root or args.output / "datasets"
    if args.root is None:
        generate_demo_dataset(root, category=args.category, image_size=args.image_size, seed=0, scene=args.scene)
    rows, curves = [], []
    for seed in args.seeds:
        for name in args.models:
            row, rates = run_one(name, seed, args, root)
            rows.append(row)
            curves += [{"model": name, "seed": seed, "step": step, "lr": lr} for step, lr in enumerate(rates)]
            print(f"{name} seed {seed}: image AUROC {row['image_AUROC']:.3f}, {row['train_seconds']:.1f} s", flush=True)
    atomic_write_text(args.output / "runs.csv", _csv(rows))
    atomic_write_text(args.output / "lr_curves.csv", _csv(curves))
    table = _markdown(rows, args)
    atomic_write_text(args.output / "compare.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
