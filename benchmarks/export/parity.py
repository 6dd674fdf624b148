"""Torch eager vs exported OpenVINO (f32 and the CPU's default precision) on a LOCO-layout test set.

    python benchmarks/export/parity.py --ckpt <model.ckpt> --xml <model.xml> --root datasets/demo --category demo_box

Prints the max absolute difference of image scores and anomaly maps after anomalib's post-processing (which is part
of the exported graph), with whole test batches and one image at a time (the OpenVINO fault of issue 13 depended on the
batch size), and the spread of the torch scores (a comparison of saturated scores would prove nothing).
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
    rows = [f"{name}, {mode}" for name in compiled for mode in ("batch", "one image")]
    worst = {(row, field): 0.0 for row in rows for field in ("pred_score", "anomaly_map")}
    scores: list[float] = []
    for batch in datamodule.test_dataloader():
        with torch.no_grad():
            expected = model(batch.image)
        scores.extend(expected.pred_score.reshape(-1).tolist())
        for name, network in compiled.items():
            names = [next(iter(output.names)) for output in network.outputs]
            for mode, parts in (("batch", [slice(None)]), ("one image", [slice(i, i + 1) for i in range(len(batch))])):
                for part in parts:
                    outputs = dict(zip(names, network(batch.image[part].numpy()).to_tuple(), strict=True))
                    for field in ("pred_score", "anomaly_map"):
                        want = getattr(expected, field)[part].numpy()
                        difference = np.abs(np.asarray(outputs[field]).reshape(want.shape) - want).max()
                        key = (f"{name}, {mode}", field)
                        worst[key] = max(worst[key], float(difference))
    precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
    inside = sum(0.01 < score < 0.99 for score in scores)
    print(
        f"{len(scores)} test images ({inside} with a post-processed score inside (0.01, 0.99), std "
        f"{np.std(scores):.3f}); OpenVINO default CPU precision here: {precision}"
    )
    print("| OpenVINO precision, batches | max abs diff, image score | max abs diff, anomaly map |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row} | {worst[row, 'pred_score']:.2e} | {worst[row, 'anomaly_map']:.2e} |")


if __name__ == "__main__":
    main()
