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
from anomalib_npgmf.metrics import rank_auroc
from anomalib_npgmf.models.npgmf.torch_model import IMAGE_LEVEL


def pixel_aurocs(model: torch.nn.Module, folder: Path, category: str) -> dict[str, dict[str, float]]:
    """{subset: {map name: pixel AUROC}}: over all test images (anomalib's figure), and over the good images with only
    the logical or only the structural ones."""
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    net = model.model

    def part_maps(images: torch.Tensor) -> dict[str, torch.Tensor]:
        raw = net.unsmoothed_maps(images)
        maps = {
            part: net.blur(net.map_normalised(part, value)) for part, value in raw.items() if part not in IMAGE_LEVEL
        }
        priors = {part: raw[part] for part in ("global", "patch") if part in raw}
        if priors:
            maps["priors (global + patch)"] = net.blur(net.fuse(priors))
        return maps

    scored = saved_runs.score_test_set(model, datamodule, part_maps)
    maps = {"fused (output)": scored.maps, **scored.extra_maps}
    subsets = {"all": {"good", "logical", "structural"}, "logical": {"good", "logical"}}
    subsets["structural"] = {"good", "structural"}
    result = {}
    for subset, kinds in subsets.items():
        keep = torch.tensor([kind in kinds for kind in scored.kinds])
        result[subset] = {
            name: rank_auroc(values[keep].reshape(-1), scored.masks[keep].reshape(-1)) for name, values in maps.items()
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
