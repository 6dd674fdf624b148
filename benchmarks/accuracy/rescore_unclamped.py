"""Rescore an accuracy run's saved checkpoints with and without anomalib's post-processor (no retraining).

Why: the harness scores ``model(batch.image)``, which ends in anomalib's ``PostProcessor``. With a validation set of
normal images only, its threshold is the highest validation score and every score above threshold + half the
validation range is clamped to 1.0, so many test scores tie and the image AUROC drops (measured on the held-out
scenes: up to 0.09). This prints both figures per row, from one forward pass per batch:

    python benchmarks/accuracy/rescore_unclamped.py OUT_FOLDER --models probe_mean Padim --seed 0 [--json FILE]

``OUT_FOLDER`` is a harness ``--output`` (its ``data/`` and ``runs/<model>_<seed>/.../<category>/.../model.ckpt``).
"""

import argparse
import json
from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import registry
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import LocoResults


def rescore(folder: Path, name: str, seed: int, category: str, image_size: int) -> dict[str, list[float]]:
    """{"logical": [clamped AUROC, raw AUROC, raw AU-sPRO], "structural": [...]} of one saved run."""
    runs = folder / "runs"
    run = next(path for path in (runs / f"{name}_{seed}", runs / f"{name.lower()}_{seed}") if path.exists())
    checkpoint = next(run.rglob(f"{category}/**/model.ckpt"))
    model = registry.MODELS[registry.resolve(name)].build(image_size, False)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"])
    model.eval()
    clamped, raw = LocoResults(), LocoResults()
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            output = model.model(model.pre_processor(batch.image))
            raw.add(batch.image_path, output.pred_score, output.anomaly_map)
            post = model.post_processor(output)
            clamped.add(batch.image_path, post.pred_score, post.anomaly_map)
    with_clamp, without = clamped.table(), raw.table()
    return {
        kind: [with_clamp[kind]["image_AUROC"], without[kind]["image_AUROC"], without[kind]["AU-sPRO"]]
        for kind in ("logical", "structural")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write {model|category|folder: figures} here")
    parser.add_argument("--categories", nargs="+", help="only these categories (default: every one under data/)")
    arguments = parser.parse_args(argv)
    figures = {}
    for folder in arguments.folders:
        for name in arguments.models:
            categories = sorted(path.name for path in (folder / "data").iterdir() if path.is_dir())
            for category in arguments.categories or categories:
                key = f"{registry.resolve(name)}|{category}|{folder.name}"
                figures[key] = rescore(folder, name, arguments.seed, category, arguments.image_size)
                print(key, {kind: [round(v, 3) for v in pair] for kind, pair in figures[key].items()}, flush=True)
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
