"""Folder layouts the synthetic generator writes: MVTec LOCO (the default), MVTec AD and VisA (``visa_pytorch``).

MVTec LOCO: ``train/good``, ``validation/good``, ``test/{good,logical_anomalies,structural_anomalies}``,
``ground_truth/<anomaly dir>/<stem>/<region>.png`` (one file per region, holding the defect's pixel value) and
``defects_config.json``. MVTec AD: ``train/good``, ``test/{good,<defect>}``, ``ground_truth/<defect>/<stem>_mask.png``
(the union of the regions, 0/255). VisA as anomalib's ``Visa`` datamodule prepares it (``visa_pytorch/<category>``):
``train/good/NNNN.JPG``, ``test/good/NNNN.JPG``, ``test/bad/NNN.JPG`` and ``ground_truth/bad/NNN.png`` (3-channel
0/255 masks, as anomalib's split writes them). All get ``defect_types.json`` (image -> defect name) and, written last
so a complete folder is recognisable, ``generation.json``.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .scenes import SCENES, DefectSpec, render, width_height

LAYOUTS = ("mvtec_loco", "mvtec_ad", "visa")
WRITTEN_SUFFIX = {"mvtec_loco": ".png", "mvtec_ad": ".png", "visa": ".JPG"}  # what the generator writes per layout


def layout_of(parameters: dict) -> str:
    """Layout of a generation record (records without the key predate layouts and are LOCO)."""
    return parameters.get("layout", "mvtec_loco")


def defects_of(parameters: dict) -> list[DefectSpec]:
    """The defect kinds a generation draws: the scene's, or the chosen subset (``defects``), in the scene's order."""
    chosen = parameters.get("defects")
    return [spec for spec in SCENES[parameters["scene"]].defects if chosen is None or spec.name in chosen]


def _jobs(parameters: dict) -> list[tuple[str, str | None, int]]:
    """(split folder, defect or None, index) of every image, in drawing order (the order fixes the random stream)."""
    defects = defects_of(parameters)
    jobs: list[tuple[str, str | None, int]] = [("train/good", None, i) for i in range(parameters["n_train"])]
    if layout_of(parameters) == "mvtec_loco":
        jobs += [("validation/good", None, i) for i in range(parameters["n_val"])]
    jobs += [("test/good", None, i) for i in range(parameters["n_test_good"])]
    if layout_of(parameters) == "mvtec_ad":
        for spec in defects:
            jobs += [(f"test/{spec.name}", spec.name, i) for i in range(parameters["n_test_per_defect"])]
        return jobs
    if layout_of(parameters) == "visa":  # normal images numbered across train/test, one "bad" folder
        jobs = [(split, None, number) for number, (split, _, _) in enumerate(jobs)]
        bad = [spec.name for spec in defects for _ in range(parameters["n_test_per_defect"])]
        return jobs + [("test/bad", name, index) for index, name in enumerate(bad)]
    for kind in ("logical", "structural"):
        index = 0
        for spec in (d for d in defects if d.kind == kind):
            for _ in range(parameters["n_test_per_defect"]):
                jobs.append((f"test/{kind}_anomalies", spec.name, index))
                index += 1
    return jobs


def expected_counts(parameters: dict) -> dict[str, int]:
    """Images per split folder of a generation (what a complete folder holds)."""
    counts: dict[str, int] = {}
    for split, _, _ in _jobs(parameters) if parameters else []:
        counts[split] = counts.get(split, 0) + 1
    return counts


def metadata_files(parameters: dict) -> tuple[str, ...]:
    """The JSON files a complete generation holds."""
    if layout_of(parameters) != "mvtec_loco":
        return ("defect_types.json", "generation.json")
    return ("defects_config.json", "defect_types.json", "generation.json")


def image_suffix(parameters: dict) -> str:
    """File suffix of the images of a generation (VisA's are JPEG files named ``.JPG``)."""
    return WRITTEN_SUFFIX[layout_of(parameters)]


def _defects_config(defects: list[DefectSpec], image_size: int | list[int]) -> list[dict]:
    """LOCO's ``defects_config.json`` entries; absolute saturation areas scale with the image area."""
    width, height = width_height(image_size if isinstance(image_size, int) else tuple(image_size))
    area_scale = width * height / 128**2
    return [
        {
            "defect_name": spec.name,
            "pixel_value": spec.pixel_value,
            "saturation_threshold": spec.saturation_threshold
            if spec.relative_saturation
            else round(spec.saturation_threshold * area_scale),
            "relative_saturation": spec.relative_saturation,
        }
        for spec in defects
    ]


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".JPG":  # VisA ships JPEG photos
        Image.fromarray(array).save(path, format="JPEG", quality=95)
        return
    # zlib level 1 above 512x512 (real-size images): a noisy 1024 px PNG takes 0.25 s instead of 0.4 s, same pixels
    level = 1 if array.shape[0] * array.shape[1] > 512 * 512 else 6
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=level)


def write_category(folder: Path, parameters: dict) -> None:
    """Draw and write every image, mask and metadata file of one generation into ``folder``."""
    size, scene, layout = parameters["image_size"], parameters["scene"], layout_of(parameters)
    size = size if isinstance(size, int) else tuple(size)
    defects = defects_of(parameters)
    pixel_values = {spec.name: spec.pixel_value for spec in defects}
    rng = np.random.default_rng(parameters["seed"])
    defect_types: dict[str, str] = {}
    jobs = _jobs(parameters)
    suffix = image_suffix(parameters)
    several = parameters.get("structural_regions", 1)
    for split, defect, index in tqdm(jobs, desc=f"Generating {parameters['category']}", unit="img", disable=None):
        image, regions = render(scene, size, rng, defect, several)
        # VisA numbers normal images with 4 digits and anomalous ones with 3, as the real dataset does
        stem = f"{index:04d}" if layout == "visa" and defect is None else f"{index:03d}"
        _save_png(image, folder / split / f"{stem}{suffix}")
        if defect is None:
            continue
        if not regions:  # every anomalous image must have at least one region
            msg = f"internal error: defect {defect} produced no region"
            raise RuntimeError(msg)
        anomaly_dir = split.split("/")[1]
        defect_types[f"test/{anomaly_dir}/{stem}"] = defect
        if layout != "mvtec_loco":
            union = np.where(np.any([region.mask for region in regions], axis=0), 255, 0).astype(np.uint8)
            if layout == "visa":  # anomalib's VisA split writes 3-channel masks named like the image
                _save_png(np.repeat(union[..., None], 3, axis=2), folder / "ground_truth" / anomaly_dir / f"{stem}.png")
            else:
                _save_png(union, folder / "ground_truth" / anomaly_dir / f"{stem}_mask.png")
            continue
        for number, region in enumerate(regions):
            mask = np.where(region.mask, pixel_values[region.defect], 0).astype(np.uint8)
            _save_png(mask, folder / "ground_truth" / anomaly_dir / stem / f"{number:03d}.png")
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "mvtec_loco":
        (folder / "defects_config.json").write_text(json.dumps(_defects_config(defects, size), indent=2) + "\n")
    (folder / "defect_types.json").write_text(json.dumps(defect_types, indent=2, sort_keys=True) + "\n")
    (folder / "generation.json").write_text(json.dumps(parameters, indent=2) + "\n")
