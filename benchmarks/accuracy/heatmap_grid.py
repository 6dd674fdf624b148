"""Heatmap grids of Npgmf's maps, one row per defect kind, from an accuracy run's saved checkpoints (issue 18 item 3).

Each row is the first test image of one defect kind (and one good image): the image, its LOCO ground truth, the fused
map the model outputs, and each part's normalised map alone. Every map column shares one colour scale across rows
(0 = the normal images' 90 % quantile, the top = the column's largest value in the grid), so a row that stays dark
where another glows is weaker evidence, not a rescaled copy.

    python benchmarks/accuracy/heatmap_grid.py OUT_FOLDER [...] --models Npgmf --seed 0 --out-dir docs/heatmaps
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from anomalib_npgmf.benchmarking import saved_runs
from anomalib_npgmf.benchmarking.data import loco_datamodule
from anomalib_npgmf.deploy import heat_overlay, image_pixels
from anomalib_npgmf.models.npgmf.torch_model import IMAGE_LEVEL

TILE = 128  # pixels per tile side in the grid
LABEL_HEIGHT = 14


def first_of_each_kind(folder: Path, category: str) -> dict[str, Path]:
    """{defect kind (or "good"): the first test image of it}, kinds read from the generated ``defect_types.json``."""
    kinds = json.loads((folder / "data" / category / "defect_types.json").read_text())
    test = folder / "data" / category / "test"
    chosen: dict[str, Path] = {"good": sorted((test / "good").glob("*.png"))[0]}
    for path in sorted(test.glob("*_anomalies/*.png")):
        chosen.setdefault(kinds[f"test/{path.parent.name}/{path.stem}"], path)
    return chosen


def part_maps(model: torch.nn.Module, folder: Path, category: str, paths: list[Path]) -> dict[str, np.ndarray]:
    """{column: (N, H, W) map} for the images at ``paths``: the fused output and each localising part alone."""
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("test")
    wanted = {str(path) for path in paths}
    net = model.model
    columns: dict[str, dict[str, np.ndarray]] = {}
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            keep = [index for index, path in enumerate(batch.image_path) if str(path) in wanted]
            if not keep:
                continue
            images = model.pre_processor(batch.image[keep])
            maps = {"fused (output)": net(images).anomaly_map}
            for part, part_map in net.unsmoothed_maps(images).items():
                if part not in IMAGE_LEVEL:  # one value per image: no place to point at
                    maps[part] = net.blur(net.map_normalised(part, part_map))
            for name, value in maps.items():
                for row, index in enumerate(keep):
                    columns.setdefault(name, {})[str(batch.image_path[index])] = value[row, 0].numpy()
    return {name: np.stack([by_path[str(path)] for path in paths]) for name, by_path in columns.items()}


def ground_truth(image_path: Path) -> np.ndarray:
    """The union of an image's LOCO ground-truth masks as a (H, W) array in [0, 1] (zeros for a good image)."""
    folder = image_path.parents[2] / "ground_truth" / image_path.parent.name / image_path.stem
    union = np.zeros(image_pixels(image_path).shape[:2], dtype=np.float32)
    for mask_path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        union = np.maximum(union, (np.asarray(Image.open(mask_path).convert("L")) > 0).astype(np.float32))
    return union


def render(rows: dict[str, Path], maps: dict[str, np.ndarray]) -> Image.Image:
    """The grid: a row per kind; columns image, ground truth, then each map on its column's shared scale."""
    headers = ["image", "ground truth", *maps]
    grid = Image.new("RGB", (TILE * len(headers), (TILE + LABEL_HEIGHT) * len(rows) + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(grid)
    for column, header in enumerate(headers):
        draw.text((column * TILE + 2, 0), header, fill="black")
    tops = {name: max(float(values.max()), 1e-6) for name, values in maps.items()}
    for row, (kind, path) in enumerate(rows.items()):
        top = LABEL_HEIGHT + row * (TILE + LABEL_HEIGHT)
        draw.text((2, top), kind, fill="black")
        image = Image.fromarray(image_pixels(path))
        tiles = [image, heat_overlay(image, ground_truth(path), Image.NEAREST)]
        tiles += [
            heat_overlay(image, values[row].clip(0) / tops[name], Image.BILINEAR) for name, values in maps.items()
        ]
        for column, tile in enumerate(tiles):
            grid.paste(tile.convert("RGB").resize((TILE, TILE)), (column * TILE, top + LABEL_HEIGHT))
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    saved_runs.add_arguments(parser, default_models=["Npgmf"])
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for <model>_<category>_<folder>.png")
    parser.add_argument("--tag", default="", help="appended to each file name (e.g. before / after)")
    arguments = parser.parse_args(argv)
    arguments.out_dir.mkdir(parents=True, exist_ok=True)
    for folder, category, name, model in saved_runs.each_run(arguments):
        rows = first_of_each_kind(folder, category)
        grid = render(rows, part_maps(model, folder, category, list(rows.values())))
        target = arguments.out_dir / f"{name}_{category}_{folder.name}{arguments.tag}.png"
        partial = target.with_suffix(".partial.png")
        grid.quantize(colors=256).save(partial, optimize=True)  # a palette keeps committed grids ~4x smaller
        partial.replace(target)  # never a half-written grid under the final name
        print(target, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
