"""Rescore an accuracy run's saved checkpoints with and without anomalib's post-processor (no retraining).

Why: the harness scores ``model(batch.image)``, which ends in anomalib's ``PostProcessor``. With a validation set of
normal images only, its threshold is the highest validation score and every score above threshold + half the
validation range is clamped to 1.0, so many test scores tie and the image AUROC drops (measured on the held-out
scenes: up to 0.09). This prints both figures per row, from one forward pass per batch:

    python benchmarks/accuracy/rescore_unclamped.py OUT_FOLDER --models probe_mean Padim --seed 0 [--json FILE]

``OUT_FOLDER`` is a harness ``--output`` (its ``data/`` and ``runs/<model>_<seed>/.../<category>/.../model.ckpt``).
"""

from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import LocoResults


def rescore(model: torch.nn.Module, folder: Path, category: str) -> dict[str, list[float]]:
    """{"logical": [clamped AUROC, raw AUROC, raw AU-sPRO], "structural": [...]} of one saved run."""
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


def show(key: str, figures: dict[str, list[float]]) -> None:
    print(key, {kind: [round(v, 3) for v in values] for kind, values in figures.items()}, flush=True)


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], rescore, show, argv)


if __name__ == "__main__":
    raise SystemExit(main())
