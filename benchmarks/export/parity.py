"""Torch eager vs exported OpenVINO (f32 and the CPU's default precision) on a LOCO-layout test set.

    python benchmarks/export/parity.py --ckpt <model.ckpt> --xml <model.xml> --root datasets/demo --category demo_box

Prints the max absolute difference of image scores and anomaly maps (after anomalib's post-processing, which is
part of the exported graph).
"""

import argparse
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from anomalib_npgmf.data import MVTecLOCORegions
from anomalib_npgmf.evaluate import resolve_model_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--xml", type=Path, required=True)
    parser.add_argument("--model", default="Npgmf")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--category", required=True)
    arguments = parser.parse_args()
    model = resolve_model_class(arguments.model).load_from_checkpoint(arguments.ckpt, map_location="cpu").eval()
    datamodule = MVTecLOCORegions(root=arguments.root, category=arguments.category, num_workers=0, loco_report=False)
    datamodule.setup("test")
    core = ov.Core()
    compiled = {
        "f32": core.compile_model(str(arguments.xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}),
        "default": core.compile_model(str(arguments.xml), "CPU"),
    }
    worst = {(name, field): 0.0 for name in compiled for field in ("pred_score", "anomaly_map")}
    count = 0
    for batch in datamodule.test_dataloader():
        with torch.no_grad():
            expected = model(batch.image)
        for name, network in compiled.items():
            names = [next(iter(output.names)) for output in network.outputs]
            outputs = dict(zip(names, network(batch.image.numpy()).to_tuple(), strict=True))
            for field in ("pred_score", "anomaly_map"):
                difference = np.abs(outputs[field] - getattr(expected, field).numpy()).max()
                worst[name, field] = max(worst[name, field], float(difference))
        count += batch.image.shape[0]
    precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
    print(f"{count} test images; OpenVINO default CPU precision here: {precision}")
    print("| OpenVINO precision | max abs diff, image score | max abs diff, anomaly map |")
    print("|---|---|---|")
    for name in compiled:
        print(f"| {name} | {worst[name, 'pred_score']:.2e} | {worst[name, 'anomaly_map']:.2e} |")


if __name__ == "__main__":
    main()
