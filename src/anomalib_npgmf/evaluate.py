"""``anomalib-npgmf evaluate``: the MVTec LOCO table and heatmap grids for a trained or exported model.

Works for any anomalib model (``--model Patchcore``) from its Lightning checkpoint, and for exported OpenVINO / ONNX
models (``--exported model.xml``). Writes ``loco_report.{json,csv,md}`` and, per defect type, a PNG grid of the best
and worst scored images with their heatmaps. With several ``--category`` names (one unified model, e.g. a
multi-category Npgmf): each category's report and grids in ``<output>/<category>/``, and the per-category table with
its mean over categories in ``<output>/loco_report_per_category.{json,csv,md}``.
"""

import argparse
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from anomalib_npgmf.data import MVTecLOCORegions
from anomalib_npgmf.ground_truth import anomaly_type_of, load_defect_regions
from anomalib_npgmf.metrics import LocoResults, format_table, write_report
from anomalib_npgmf.metrics.loco import format_per_category_table, per_category_table, write_per_category_report
from anomalib_npgmf.utils import atomic_write_bytes, ensure_writable_folder


def resolve_model_class(name: str) -> type:
    """An anomalib model class by name (``Npgmf``, ``padim``, ``anomalib.models.Patchcore``), with a suggestion."""
    from anomalib_npgmf.utils.model_names import find_model_class, model_classes, nearest_model_name

    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        return getattr(__import__(module_name, fromlist=[class_name]), class_name)
    classes = model_classes()
    found = find_model_class(name, classes)
    if found is not None:
        return found
    close = nearest_model_name(name, classes)
    hint = f" Did you mean '{close}'?" if close else ""
    msg = f"unknown model '{name}'.{hint} Known: {', '.join(sorted(classes))}"
    raise ValueError(msg)


def _predict_checkpoint(model: torch.nn.Module, datamodule: MVTecLOCORegions, results: LocoResults) -> None:
    with torch.no_grad():
        for batch in tqdm(datamodule.test_dataloader(), desc="Scoring test images", unit="batch"):
            output = model(batch.image)
            results.add(batch.image_path, output.pred_score, output.anomaly_map)


def _compile_exported(path: Path, precision: str) -> Any:
    import openvino as ov

    from anomalib_npgmf.deploy import openvino_config

    return ov.Core().compile_model(str(path), "CPU", openvino_config(precision) or {})


def _predict_exported(compiled: Any, datamodule: MVTecLOCORegions, results: LocoResults) -> None:
    names = [next(iter(output.names)) for output in compiled.outputs]
    for batch in tqdm(datamodule.test_dataloader(), desc="Scoring test images (OpenVINO)", unit="batch"):
        for index in range(batch.image.shape[0]):
            outputs = dict(zip(names, compiled(batch.image[index : index + 1].numpy()).to_tuple(), strict=True))
            results.add([batch.image_path[index]], outputs["pred_score"], outputs["anomaly_map"])


def _tile(image_path: str, anomaly_map: np.ndarray, score: float, size: int = 192) -> Image.Image:
    """Image | heatmap overlay with the ground-truth outline, captioned with the score."""
    from anomalib_npgmf.deploy import heat_overlay, image_pixels

    image = Image.fromarray(image_pixels(image_path)).resize((size, size))
    overlay = heat_overlay(image, anomaly_map, Image.BICUBIC).convert("RGB")  # BICUBIC: PIL's default resize
    regions = load_defect_regions(image_path) if anomaly_type_of(image_path) != "good" else []
    if regions:
        outline = np.zeros(regions[0].mask.shape, bool)
        for region in regions:
            outline |= region.mask
        edge = Image.fromarray((outline * 255).astype(np.uint8)).resize((size, size)).point(lambda v: 255 * (v > 127))
        edges = np.asarray(edge) > 0
        inner = np.roll(edges, 1, 0) & np.roll(edges, -1, 0) & np.roll(edges, 1, 1) & np.roll(edges, -1, 1)
        border = edges & ~inner
        pixels = np.asarray(overlay).copy()
        pixels[border] = (0, 255, 0)
        overlay = Image.fromarray(pixels)
    tile = Image.new("RGB", (2 * size, size + 18), "white")
    tile.paste(image, (0, 18))
    tile.paste(overlay, (size, 18))
    ImageDraw.Draw(tile).text(
        (4, 2), f"{Path(image_path).parent.name}/{Path(image_path).name}  score {score:.3f}", fill="black"
    )
    return tile


def write_grids(results: LocoResults, output: Path, per_side: int = 3) -> list[Path]:
    """Per defect type: the ``per_side`` best and worst scored images (for good images: lowest and highest)."""
    maps = np.stack(results.maps)
    low, high = np.quantile(maps, 0.01), np.quantile(maps, 0.999)
    scaled = (maps - low) / (high - low + 1e-12)  # one scale for all tiles, so heatmaps are comparable
    groups: dict[str, list[int]] = {}
    for index, path in enumerate(results.image_paths):
        kind = anomaly_type_of(path)
        names = {r.defect_name for r in load_defect_regions(path)} if kind != "good" else {"good"}
        for name in names:
            groups.setdefault(name, []).append(index)
    written = []
    for name, indices in tqdm(sorted(groups.items()), desc="Heatmap grids", unit="grid"):
        ordered = sorted(indices, key=lambda i: results.scores[i], reverse=name != "good")
        chosen = ordered[:per_side] + [i for i in ordered[-per_side:] if i not in ordered[:per_side]]
        tiles = [_tile(results.image_paths[i], scaled[i], results.scores[i]) for i in chosen]
        width, height = tiles[0].size
        grid = Image.new("RGB", (width, height * len(tiles)), "white")
        for row, tile in enumerate(tiles):
            grid.paste(tile, (0, row * height))
        buffer = io.BytesIO()
        grid.save(buffer, format="PNG")
        written.append(atomic_write_bytes(output / "grids" / f"{name}.png", buffer.getvalue()))
    return written


def main_evaluate(argv: list[str] | None = None) -> int:
    """Score a LOCO-layout test set, print and write the table, draw the grids."""
    parser = argparse.ArgumentParser(prog="anomalib-npgmf evaluate", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="Lightning checkpoint of an anomalib model")
    source.add_argument("--exported", type=Path, help="exported OpenVINO (.xml) or ONNX model")
    parser.add_argument("--model", default="Npgmf", help="model class of --ckpt (default Npgmf; e.g. Patchcore)")
    parser.add_argument("--root", type=Path, required=True, help="dataset root holding the category folder")
    parser.add_argument(
        "--category", nargs="+", required=True, help="category folder(s); several: per-category table and its mean"
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for loco_report.* and grids/")
    parser.add_argument("--fpr-limit", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="f32", help="OpenVINO precision for --exported (default f32)")
    arguments = parser.parse_args(argv)
    for path in (arguments.ckpt, arguments.exported):
        if path is not None and not path.is_file():
            msg = f"{path} does not exist"
            raise FileNotFoundError(msg)
    ensure_writable_folder(arguments.output, "--output")
    if arguments.ckpt is not None:
        model = resolve_model_class(arguments.model).load_from_checkpoint(arguments.ckpt, map_location="cpu").eval()
    else:
        compiled = _compile_exported(arguments.exported, arguments.precision)
    categories = list(dict.fromkeys(arguments.category))
    tables = {}
    for category in categories:
        output = arguments.output if len(categories) == 1 else arguments.output / category
        datamodule = MVTecLOCORegions(
            root=arguments.root,
            category=category,
            eval_batch_size=arguments.batch_size,
            num_workers=0,
            loco_report=False,
        )
        datamodule.setup("test")
        results = LocoResults()
        if arguments.ckpt is not None:
            _predict_checkpoint(model, datamodule, results)
        else:
            _predict_exported(compiled, datamodule, results)
        tables[category] = results.table(arguments.fpr_limit)
        write_report(tables[category], output, arguments.fpr_limit)
        grids = write_grids(results, output)
        if len(categories) > 1:
            print(f"\n{category}:")
        print(format_table(tables[category], arguments.fpr_limit))
        print(f"Report: {output / 'loco_report.md'} (.json, .csv)")
        print(f"Heatmap grids ({len(grids)}): {output / 'grids'}")
    if len(categories) > 1:
        table = per_category_table(tables)
        write_per_category_report(table, arguments.output, arguments.fpr_limit)
        print("Per category, and the mean over categories:")
        print(format_per_category_table(table, arguments.fpr_limit))
        print(f"Report: {arguments.output / 'loco_report_per_category.md'} (.json, .csv)")
    return 0
