"""Rescore saved Npgmf runs (with the part prior) with the part map painted in at several weights, without retraining.

The part map (``part_in_map``, issue 18) reads only the images and the fitted part prior; it changes no training. So
each saved run is rebuilt with the map, its part territories are fitted on the run's training normals and its
normalisation on the run's validation normals (the model's own fitting code), and the map is fused at each weight.
Per weight (and per part-map floor, ``--floors``): raw logical / structural image AUROC and AU-sPRO, anomalib's pixel
AUROC (every test pixel) and the same over good and structural images only; ``--by-kind``: pixel AUROC and AU-sPRO of
each defect kind's images against the good ones.

    python benchmarks/accuracy/rescore_part_map.py OUT_FOLDER --models Npgmf_no_part_map --seed 0 \\
        [--weights 0 1 2 4 8 16] [--floors 0 0.1] [--by-kind] [--kind-scaled] [--json FILE]

Weight 0 is the run as trained (the image score never reads the map, so every image figure stays as it was). With
``--floors``, each figure is keyed "<weight> floor <floor>"; without, "<weight>" at the run's own floor.
"""

import argparse
import json
from pathlib import Path

import torch

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.ground_truth import load_defect_regions
from anomalib_npgmf.metrics import au_spro, rank_auroc
from anomalib_npgmf.models.npgmf.torch_model import fusion_shares

WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
FPR_LIMIT = 0.05  # the LOCO table's (metrics/loco.py)


def with_part_map(model: torch.nn.Module, folder: Path, category: str, kind_scaled: bool = False) -> torch.nn.Module:
    """The saved run rebuilt with ``part_in_map`` (and ``part_map_kind_scaled`` if asked; its own settings otherwise;
    its weights restored below, so no pretrained weights are read) and its map fitted as training would fit it."""
    settings = {**dict(model.hparams), "part_in_map": True, "pre_trained": False, "visualizer": False}
    settings["part_map_kind_scaled"] = kind_scaled
    rebuilt = type(model)(**settings)
    state = rebuilt.state_dict() | model.state_dict()  # the new buffers start unfitted
    rebuilt.load_state_dict(state)
    prior = rebuilt.model.part_prior  # its vector spread, as fit() sets it: the covariance's diagonal (to float)
    prior.vector_spread.copy_(torch.linalg.inv(prior.precision.double()).diagonal(dim1=1, dim2=2).sqrt())
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("fit")
    rebuilt.eval()
    rebuilt.fit_part_territory(datamodule.train_dataloader())
    rebuilt.fit_normalization(saved_runs.calibration_loaders(folder, category))
    return rebuilt.eval()


def rescore(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
    """{weight: figures} with the part map fused at each weight (on ``fusion_weights``' scale)."""
    if model.model.part_prior is None:
        msg = f"{folder}: this run has no part prior (train it with use_part_prior: true)"
        raise ValueError(msg)
    rebuilt = with_part_map(model, folder, category, arguments.kind_scaled)
    net = rebuilt.model
    built = net._weights_built_with
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    kinds = defect_kinds(folder, category)
    floors = arguments.floors
    result = {}
    for weight in arguments.weights:
        net.fusion_weights["part_map"] = fusion_shares(
            built[0], net.current_invariant_weight, built[1], net.current_part_weight, weight
        )["part_map"]
        for floor in floors or [net.map_floors["part_map"]]:
            net.map_floors["part_map"] = float(floor)
            key = f"{weight:g} floor {floor:g}" if floors else f"{weight:g}"
            scored = saved_runs.score_test_set(rebuilt, datamodule)  # one pass for both
            result[key] = saved_runs.figures_of(scored)
            if arguments.by_kind:
                result[key] |= pixel_aurocs_by_kind(scored, kinds)
    return result


def defect_kinds(folder: Path, category: str) -> dict[str, str]:
    """``{"<folder>/<stem>": defect kind}`` of the generated test images."""
    types = json.loads((folder / "data" / category / "defect_types.json").read_text())
    return {"/".join(Path(image).parts[-2:]): kind for image, kind in types.items()}


def pixel_aurocs_by_kind(scored: saved_runs.ScoredTestSet, kinds: dict[str, str]) -> dict[str, float]:
    """``{"pixels <kind>": pixel AUROC of that kind's images and the good images, "AU-sPRO <kind>": that kind's
    regions against the good images' false positives}`` of a scored test set (where a map loses AU-sPRO: issue 18,
    pins at 256 px)."""
    paths = scored.results.image_paths
    names = [kinds.get(f"{Path(path).parent.name}/{Path(path).stem}", "good") for path in paths]
    good = torch.tensor([name == "good" for name in names])
    result = {}
    for kind in sorted(set(names) - {"good"}):
        keep = good | torch.tensor([name == kind for name in names])
        result[f"pixels {kind}"] = rank_auroc(scored.maps[keep].reshape(-1), scored.masks[keep].reshape(-1))
        chosen = keep.nonzero().reshape(-1).tolist()
        regions = [
            [(region.mask, region.saturation_area) for region in load_defect_regions(paths[i])] if not good[i] else []
            for i in chosen
        ]
        result[f"AU-sPRO {kind}"] = au_spro([scored.results.maps[i] for i in chosen], regions, FPR_LIMIT)
    return result


def show(key: str, rows: dict) -> None:
    for weight, row in rows.items():
        cells = "  ".join(f"{name}: {value:.3f}" for name, value in row.items())
        print(f"{key} weight {weight}: {cells}", flush=True)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", nargs="+", type=float, default=list(WEIGHTS))
    parser.add_argument("--floors", nargs="+", type=float, help="part-map floors (default: the run's own)")
    parser.add_argument("--by-kind", action="store_true")
    parser.add_argument("--kind-scaled", action="store_true", help="paint part distances in their kind's spread")


def main(argv: list[str] | None = None) -> int:
    return saved_runs.run_script(__doc__.splitlines()[0], rescore, show, argv, options=options)


if __name__ == "__main__":
    raise SystemExit(main())
