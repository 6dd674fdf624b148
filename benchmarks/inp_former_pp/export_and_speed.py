"""OpenVINO parity (f32 hint and default precision) and the cost of the encoder blocks we skip.

    python benchmarks/inp_former_pp/export_and_speed.py --output results/inp_export

1. A random-init InpFormerPlusPlus (ViT-S/14-reg4, resize 128 -> crop 112) exported with anomalib's OpenVINO export;
   max |OpenVINO - torch eager| of image scores and maps on 8 random images, compiled with
   ``INFERENCE_PRECISION_HINT=f32`` and with the device default (bf16 on CPUs with AVX-512 bf16).
2. ViT-B/14-reg4 encoder at 392 px, batch 1: forward time of blocks 0..9 (what we build) vs all 12 (what anomalib's
   InpFormer runs), median of ``--repeats`` runs.

Writes ``export_and_speed.md`` atomically.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov
import timm
import torch

from anomalib_npgmf.models.inp_former_pp import InpFormerPlusPlus
from anomalib_npgmf.utils import atomic_write_text


def parity() -> dict[str, float]:
    torch.manual_seed(0)
    model = InpFormerPlusPlus(
        backbone="vit_small_patch14_reg4_dinov2", pre_trained=False, image_size=128, crop_size=112, score_size=None
    ).eval()
    images = torch.rand(8, 3, 160, 140)
    with torch.no_grad():
        expected = model(images)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        path = model.to_openvino(folder)
        for name, config in (("f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("default", {})):
            compiled = ov.Core().compile_model(str(path), "CPU", config)
            names = [next(iter(output.names)) for output in compiled.outputs]
            outputs = dict(zip(names, compiled(images.numpy()).to_tuple(), strict=True))
            results[f"{name} score"] = float(np.abs(outputs["pred_score"] - expected.pred_score.numpy()).max())
            results[f"{name} map"] = float(np.abs(outputs["anomaly_map"] - expected.anomaly_map.numpy()).max())
    return results


def encoder_times(repeats: int) -> dict[str, float]:
    vit = timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False, dynamic_img_size=True).eval()
    image = torch.rand(1, 3, 392, 392)
    times = {}
    for label, depth in (("blocks 0-9 (ours)", 10), ("all 12 blocks", 12)):
        samples = []
        with torch.no_grad():
            for _ in range(repeats + 1):
                start = time.perf_counter()
                tokens = vit._pos_embed(vit.patch_embed(image))
                for block in vit.blocks[:depth]:
                    tokens = block(tokens)
                samples.append(time.perf_counter() - start)
        times[label] = statistics.median(samples[1:]) * 1000
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("results/inp_export"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    differences = parity()
    times = encoder_times(args.repeats)
    lines = [
        "| OpenVINO precision | max abs diff, image score | max abs diff, map |",
        "|---|---|---|",
        *[f"| {p} | {differences[f'{p} score']:.2e} | {differences[f'{p} map']:.2e} |" for p in ("f32", "default")],
        "",
        f"| ViT-B/14-reg4 encoder, 392 px, batch 1, {torch.get_num_threads()} threads "
        f"| ms (median of {args.repeats}) |",
        "|---|---|",
        *[f"| {label} | {value:.0f} |" for label, value in times.items()],
    ]
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.output / "export_and_speed.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
