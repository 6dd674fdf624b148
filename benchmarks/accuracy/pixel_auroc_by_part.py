"""Pixel AUROC of Npgmf's anomaly map and of each of its parts' maps, from an accuracy run's saved checkpoints.

Issue 18 asks for maps that point at the defect (the demo's anomalib pixel AUROC is 0.55). This measures which of
the maps an Npgmf holds localises: the fused map it outputs, each part's normalised map alone, and the priors' fusion
(global + patch), pooled over every pixel of every test image against the LOCO ground truth (all regions of an image).

    python benchmarks/accuracy/pixel_auroc_by_part.py OUT_FOLDER [...] [--models Npgmf] --seed 0 [--categories demo_box]
"""

from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.ground_truth import anomaly_type_of
from anomalib_npgmf.metrics import rank_auroc
from anomalib_npgmf.models.npgmf.torch_model import IMAGE_LEVEL


def pixel_aurocs(model: torch.nn.Module, folder: Path, category: str) -> dict[str, dict[str, float]]:
    """{subset: {map name: pixel AUROC}}: over all test images (anomalib's figure), and over the good images with only
    the logical or only the structural ones."""
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    net = model.model
    maps: dict[str, list[torch.Tensor]] = {}
    masks: list[torch.Tensor] = []
    types: list[str] = []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            images = model.pre_processor(batch.image)
            raw = net.unsmoothed_maps(images)
            candidates = {"fused (output)": net(images).anomaly_map}
            for part, part_map in raw.items():
                if part not in IMAGE_LEVEL:
                    candidates[part] = net.blur(net.normalizer(part)(part_map))
            priors = {part: raw[part] for part in ("global", "patch") if part in raw}
            if priors:
                candidates["priors (global + patch)"] = net.blur(net.fuse(priors))
            for name, value in candidates.items():
                maps.setdefault(name, []).append(value.reshape(value.shape[0], -1).float())
            mask = batch.gt_mask.reshape(batch.gt_mask.shape[0], -1) if batch.gt_mask is not None else None
            masks.append(mask if mask is not None else torch.zeros_like(maps["fused (output)"][-1]))
            types.extend(anomaly_type_of(path) for path in batch.image_path)
    target = torch.cat(masks) > 0
    subsets = {"all": {"good", "logical", "structural"}, "logical": {"good", "logical"}}
    subsets["structural"] = {"good", "structural"}
    result = {}
    for subset, kinds in subsets.items():
        keep = torch.tensor([kind in kinds for kind in types])
        result[subset] = {
            name: rank_auroc(torch.cat(values)[keep].reshape(-1), target[keep].reshape(-1))
            for name, values in maps.items()
        }
    return result


def show(key: str, row: dict[str, dict[str, float]]) -> None:
    for subset, values in row.items():
        cells = "  ".join(f"{part}: {value:.3f}" for part, value in values.items())
        print(f"{key} {subset}: {cells}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], pixel_aurocs, show, argv, default_models=["Npgmf"])


if __name__ == "__main__":
    raise SystemExit(main())
