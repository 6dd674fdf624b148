"""Bad or unusual image files: corrupt, truncated, other colour modes and bit depths, mixed sizes.

Each test either pins a clear error that names the file, or runs the model end to end and checks the scores.
"""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_npgmf.data.items import read_rgb_image

from .conftest import (
    CATEGORY,
    TINY_NPGMF,
    predicted_scores,
    subprocess_environment,
    tiny_datamodule,
    tiny_engine,
    tiny_model,
)

MODES = ["L", "LA", "RGBA", "P", "I;16", "RGB16", "1"]


def _rgb_pixels(size: tuple[int, int] = (24, 20)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _save_in_mode(pixels: np.ndarray, path: Path, mode: str) -> None:
    """Save 8-bit RGB ``pixels`` as ``mode`` (``I;16`` and ``RGB16`` hold the same values scaled to 16 bit)."""
    image = Image.fromarray(pixels)
    if mode == "I;16":
        gray = np.asarray(image.convert("L")).astype(np.uint16) * 257
        Image.fromarray(gray).save(path)
    elif mode == "RGB16":
        import cv2

        cv2.imwrite(str(path), pixels[..., ::-1].astype(np.uint16) * 257)
    else:
        image.convert(mode).save(path)


@pytest.mark.parametrize("mode", MODES)
def test_every_colour_mode_reads_as_rgb_in_unit_range(tmp_path, mode):
    pixels = _rgb_pixels()
    path = tmp_path / f"image_{mode.replace(';', '')}.png"
    _save_in_mode(pixels, path, mode)
    image = read_rgb_image(path)
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 20, 24)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    if mode in {"L", "LA", "I;16"}:  # grey: the same 8-bit grey values, whatever the depth
        gray = np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.float32) / 255
        # atol=1e-6 below: one float32 division of 8/16-bit values against numpy's (1 ulp at 1.0 = 6e-8)
        assert torch.allclose(image, torch.from_numpy(gray).expand(3, -1, -1), atol=1e-6)
    if mode in {"RGBA", "RGB16"}:  # alpha dropped; 16-bit RGB keeps its high byte
        assert torch.allclose(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, atol=1e-6)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    # PIL's convert("RGB") (anomalib's read_image) clips 16-bit grey at 255: a 0..65535 ramp becomes 99.6 % white.
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    image = read_rgb_image(path)
    assert float((image == 1).float().mean()) < 0.01
    assert torch.allclose(image[0], torch.from_numpy(ramp.astype(np.float32) / 65535), atol=1e-6)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"this is not a png", "cannot identify image file"), (None, "truncated"), (b"", "cannot identify")],
    ids=["garbage", "truncated", "empty"],
)
def test_unreadable_files_are_named(tmp_path, content, expected):
    path = tmp_path / "bad.png"
    if content is None:
        Image.fromarray(_rgb_pixels((64, 64))).save(path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"cannot read image .*bad\.png: .*{expected}"):
        read_rgb_image(path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(64, path.stat().st_size // 3)])


def test_truncated_training_image_fails_naming_the_file(dataset_copy, tmp_path):
    root = dataset_copy()
    bad = sorted((root / CATEGORY / "train" / "good").glob("*.png"))[3]
    _truncate(bad)
    engine = tiny_engine(tmp_path / "run")
    with pytest.raises(ValueError, match=rf"cannot read image .*{bad.name}"):
        engine.fit(tiny_model("Npgmf"), datamodule=tiny_datamodule(root))


def test_corrupt_test_image_fails_naming_the_file(dataset_copy, tmp_path):
    root = dataset_copy()
    bad = sorted((root / CATEGORY / "test" / "logical_anomalies").glob("*.png"))[0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    model = tiny_model("InpFormerPlusPlus")
    engine = tiny_engine(tmp_path / "run")
    datamodule = tiny_datamodule(root)
    engine.fit(model, datamodule=datamodule)  # train/validation images are fine
    with pytest.raises(ValueError, match=rf"cannot read image .*logical_anomalies.*{bad.name}"):
        engine.test(model, datamodule=datamodule)


def test_anomalib_cli_exits_non_zero_naming_a_corrupt_training_image(dataset_copy, tmp_path):
    root = dataset_copy()
    bad = sorted((root / CATEGORY / "train" / "good").glob("*.png"))[0]
    bad.write_bytes(b"corrupt")
    anomalib = str(Path(sys.executable).parent / "anomalib")
    command = [anomalib, "fit", "--model", "Npgmf"]
    command += [
        f"--model.{key}={list(value) if isinstance(value, tuple) else value}" for key, value in TINY_NPGMF.items()
    ]
    command += ["--data", "anomalib_npgmf.data.MVTecLOCORegions", "--data.root", str(root), "--data.category", CATEGORY]
    command += ["--data.num_workers", "0", "--data.train_batch_size", "4", "--trainer.max_epochs", "1"]
    command += ["--default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false"]
    # anomalib's CLI installs rich tracebacks (wrapped at the terminal width): its last line is our message.
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=subprocess_environment())
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "cannot read image" in last_line and bad.name in last_line, result.stderr[-2000:]


def _rewrite_images(folder: Path, modes: list[str]) -> int:
    """Re-save the images of ``folder`` round-robin in ``modes`` (same content); how many were rewritten."""
    paths = sorted(folder.glob("*.png"))
    for index, path in enumerate(paths):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        _save_in_mode(pixels, path, modes[index % len(modes)])
    return len(paths)


@pytest.mark.parametrize("model_name", ["Npgmf", "InpFormerPlusPlus"])
def test_grey_rgba_16bit_palette_images_train_and_score(dataset_copy, tmp_path, model_name):
    root = dataset_copy()
    modes = ["L", "RGBA", "I;16", "P", "RGB16"]
    for split in ("train/good", "validation/good", "test/good", "test/logical_anomalies"):
        assert _rewrite_images(root / CATEGORY / split, modes) > 0
    assert {Image.open(p).mode for p in (root / CATEGORY / "train" / "good").glob("*.png")} >= {"L", "RGBA", "P"}
    model = tiny_model(model_name)
    engine = tiny_engine(tmp_path / "run")
    datamodule = tiny_datamodule(root)
    engine.fit(model, datamodule=datamodule)
    scores = predicted_scores(engine, model, datamodule)
    assert len(scores) == len(list((root / CATEGORY / "test").rglob("*.png")))
    assert all(math.isfinite(score) for score in scores.values())


def test_mixed_image_sizes_train_and_score_at_the_model_size(dataset_copy, tmp_path):
    root = dataset_copy()
    sizes = [(80, 80), (48, 72), (64, 64), (100, 60)]
    for split in ("train/good", "validation/good", "test/good"):
        for index, path in enumerate(sorted((root / CATEGORY / split).glob("*.png"))):
            Image.open(path).resize(sizes[index % len(sizes)]).save(path)
    model = tiny_model("Npgmf")
    engine = tiny_engine(tmp_path / "run")
    datamodule = tiny_datamodule(root)
    engine.fit(model, datamodule=datamodule)
    datamodule.setup("test")
    batches = engine.predict(model, dataloaders=datamodule.test_dataloader())
    assert all(tuple(batch.anomaly_map.shape[-2:]) == (64, 64) for batch in batches)
    scores = [score for batch in batches for score in batch.pred_score.reshape(-1).tolist()]
    assert len(scores) == len(list((root / CATEGORY / "test").rglob("*.png")))
    assert all(math.isfinite(score) for score in scores)


def test_predict_openvino_scores_16bit_grey_like_its_8bit_twin(pristine_dataset, tmp_path, monkeypatch):
    # anomalib's OpenVINOInferencer reads files with PIL's convert("RGB"), which clips 16-bit grey at 255.
    import csv

    from anomalib_npgmf.cli import main

    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes openvino_cache/ into the working directory
    model = tiny_model("InpFormerPlusPlus")
    engine = tiny_engine(tmp_path / "run")
    engine.fit(model, datamodule=tiny_datamodule(pristine_dataset))
    exported = engine.export(model, export_type="openvino", export_root=tmp_path / "export")
    images = tmp_path / "images"
    images.mkdir()
    source = sorted((pristine_dataset / CATEGORY / "test" / "logical_anomalies").glob("*.png"))[0]
    gray = np.asarray(Image.open(source).convert("L"))
    Image.fromarray(gray).save(images / "gray8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(images / "gray16.png")
    assert Image.open(images / "gray16.png").mode == "I;16"
    output = tmp_path / "predictions"
    assert main(["predict-openvino", "--model", str(exported), "--input", str(images), "--output", str(output)]) == 0
    with (output / "predictions.csv").open() as stream:
        scores = {Path(row["image"]).name: float(row["pred_score"]) for row in csv.DictReader(stream)}
    # v*257/65535 and v/255 are the same reals; their float32 roundings differ by <= 1 ulp (6e-8), <= ~100x in the score
    assert scores["gray16.png"] == pytest.approx(scores["gray8.png"], abs=1e-5)
    white = read_rgb_image(images / "gray16.png")
    assert float((white == 1).float().mean()) < 0.5  # not the clipped, all-white image
    heatmap = np.asarray(Image.open(output / "heatmaps" / "gray16.png"))
    assert heatmap.shape[:2] == gray.shape
