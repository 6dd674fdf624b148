"""Image AUROC per defect kind (each kind against the good test images), from an accuracy run's saved checkpoints.

Issue 18 asks where the drop from the tuned scene to unseen ones comes from: which rule kinds, and which part of the
model. For every model this prints the AUROC of its raw image score per defect kind; for Npgmf also the AUROC of each
part alone (its normalised, blurred map's maximum; the global prior's distance), so a kind that one part sees and the
fused score loses shows up as such.

    python benchmarks/accuracy/per_defect_kind.py OUT_FOLDER [OUT_FOLDER ...] --models Npgmf probe_mean --seed 0 \
        [--categories demo_screws] [--json FILE]

``OUT_FOLDER`` is a harness ``--output``; the kinds are read from the generated ``defect_types.json``.
"""

import json
from collections import defaultdict
from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.metrics import rank_auroc


def image_scores(model: torch.nn.Module, folder: Path, category: str) -> dict[str, dict[str, float]]:
    """{image name: {"score": raw image score, <part>: that part's own image-level score (Npgmf only)}}."""
    from anomalib_npgmf.models.npgmf.torch_model import IMAGE_LEVEL, NpgmfModel

    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    scores: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            images = model.pre_processor(batch.image)
            output = model.model(images)
            parts = {}
            if isinstance(model.model, NpgmfModel):
                for part, part_map in model.model.unsmoothed_maps(images).items():
                    normalised = model.model.normalizer(part)(part_map)
                    blurred = normalised if part in IMAGE_LEVEL else model.model.blur(normalised)
                    parts[part] = blurred.amax(dim=(-3, -2, -1))
            for index, path in enumerate(batch.image_path):
                key = f"{Path(path).parent.name}/{Path(path).stem}"
                scores[key] = {"score": float(output.pred_score.reshape(-1)[index])}
                scores[key].update({part: float(value[index]) for part, value in parts.items()})
    return scores


def per_kind(scores: dict[str, dict[str, float]], kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """{column: {defect kind: AUROC against the good test images}}, plus ``(all logical)`` / ``(all structural)``."""
    good = [key for key in scores if key.startswith("good/")]
    by_kind: dict[str, list[str]] = defaultdict(list)
    for key in scores:
        if not key.startswith("good/"):
            by_kind[kinds[key]].append(key)
            by_kind[f"(all {key.split('_')[0]})"].append(key)  # each part alone on the whole logical / structural set
    columns = next(iter(scores.values())).keys()
    return {
        column: {
            kind: rank_auroc([scores[k][column] for k in good + keys], [0] * len(good) + [1] * len(keys))
            for kind, keys in sorted(by_kind.items())
        }
        for column in columns
    }


def measure(model: torch.nn.Module, folder: Path, category: str) -> dict[str, dict[str, float]]:
    """Per-kind AUROC of one saved run, the kinds read from the generated ``defect_types.json``."""
    types = json.loads((folder / "data" / category / "defect_types.json").read_text())
    kinds = {"/".join(Path(image).parts[-2:]): kind for image, kind in types.items()}
    return per_kind(image_scores(model, folder, category), kinds)


def show(key: str, table: dict[str, dict[str, float]]) -> None:
    for column, row in table.items():
        cells = "  ".join(f"{kind} {value:.3f}" for kind, value in row.items())
        print(f"{key:<40} {column:<10} {cells}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv)


if __name__ == "__main__":
    raise SystemExit(main())
