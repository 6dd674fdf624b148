"""Rescore saved Npgmf runs that have the part prior with other ``part_weight`` values, without retraining.

The part prior reads only the images and is fitted once; its weight enters only the image score at inference, so
one saved run answers for every weight (issue 18: how much part counts should weigh beside the global and invariant
priors and the local maps' maximum). Per weight: raw logical / structural image AUROC and AU-sPRO, and anomalib's
pixel AUROC (unchanged by this image-level part; printed as a check).

    python benchmarks/accuracy/rescore_part_weight.py OUT_FOLDER --models Npgmf_part --seed 0 \\
        [--weights 0 0.5 1 2 4 8] [--by-kind] [--floors none 0] [--json FILE]

Weight 0 is the run without the part prior: the other parts, their normalisation and the training do not depend on
it (the model README says why), so it is the baseline each row is compared with.

``--floors``: the part prior's normalised distance floored at each value before it is weighted (``none``: as
trained; ``0``: only what lies above the normal images' 0.9 quantile counts), rows keyed ``weight@floor``.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from per_defect_kind import per_kind
from rescore_fusion_weights import figures, fused, part_map_weight, part_scores

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.models.npgmf.torch_model import fusion_shares

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def rescore(
    model: torch.nn.Module,
    folder: Path,
    category: str,
    weights=WEIGHTS,
    by_kind: bool = False,
    floors: tuple[float | None, ...] = (None,),
) -> dict[str, dict[str, float]]:
    """{weight: LOCO figures and pixel AUROC} with the part prior at each weight (on ``fusion_weights``' scale);
    ``by_kind``: also each defect kind's image AUROC against the good test images (``kind <name>``); ``floors``:
    the part distance also floored at each value (``None``: as the model scores it), keyed ``weight@floor``."""
    net = model.model
    if net.part_prior is None:
        msg = f"{folder}: this run has no part prior (train it with use_part_prior: true)"
        raise ValueError(msg)
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    parts = part_scores(model, datamodule)
    fusion = list(model.hparams.get("fusion_weights", (1.0, 1.0, 1.0, 1.0)))
    score_fusion = model.hparams.get("score_fusion_weights")  # the image score's own, when set apart
    invariant = net.current_invariant_weight
    region = float(model.hparams.get("region_weight", 0.0))
    trained = parts.scored.extra_maps["part"]  # as the model scores it (floored if it was built with part_floor)
    result = {}
    for floor in floors:
        parts.scored.extra_maps["part"] = trained if floor is None else trained.clamp_min(floor)
        for weight in weights:
            key = f"{weight:g}" if floor is None else f"{weight:g}@{floor:g}"
            shares = fusion_shares(fusion, invariant, region, weight, part_map_weight(model))
            score_shares = None
            if score_fusion is not None:
                score_shares = fusion_shares(list(score_fusion), invariant, region, weight, part_map_weight(model))
            maps, scores = fused(parts, shares, net.score_parts, net.local_score_weight, score_shares)
            result[key] = figures(parts, maps, scores)
            if by_kind:
                result[key] |= kind_aurocs(folder, category, parts.scored.results.image_paths, scores)
    parts.scored.extra_maps["part"] = trained
    return result


def kind_aurocs(folder: Path, category: str, paths: list[str], scores: torch.Tensor) -> dict[str, float]:
    """``{"kind <defect kind>": image AUROC against the good test images}``, the kinds read from the generated
    ``defect_types.json`` (as ``per_defect_kind.py`` reads them)."""
    types = json.loads((folder / "data" / category / "defect_types.json").read_text())
    kinds = {"/".join(Path(image).parts[-2:]): kind for image, kind in types.items()}
    keyed = {
        f"{Path(path).parent.name}/{Path(path).stem}": {"score": float(score)}
        for path, score in zip(paths, scores, strict=True)
    }
    return {f"kind {kind}": auroc for kind, auroc in per_kind(keyed, kinds)["score"].items()}


def show(key: str, rows: dict[str, dict[str, float]]) -> None:
    for weight, row in rows.items():
        print(f"{key} weight {weight}: " + "  ".join(f"{name} {value:.3f}" for name, value in row.items()), flush=True)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", nargs="+", type=_weight, default=list(WEIGHTS))
    parser.add_argument("--by-kind", action="store_true", help="also each defect kind's image AUROC")
    parser.add_argument("--floors", nargs="+", type=_floor, default=[None], help="'none' or a normalised floor")


def _weight(text: str) -> float:
    value = float(text)
    if value < 0:
        msg = f"--weights takes weights >= 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _floor(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main(argv: list[str] | None = None) -> int:
    def measure(model: torch.nn.Module, folder: Path, category: str, arguments: argparse.Namespace) -> dict:
        return rescore(
            model,
            folder,
            category,
            tuple(arguments.weights),
            arguments.by_kind,
            tuple(arguments.floors),
        )

    return saved_runs.run_script(__doc__.splitlines()[0], measure, show, argv, ["Npgmf_part"], options)


if __name__ == "__main__":
    raise SystemExit(main())
