"""Train, test and export Npgmf from Python on the generated LOCO-layout data (CPU, random init, ~1-2 min).

Usage: ``python examples/train_npgmf.py [OUTPUT_DIR]``
"""

import sys
from pathlib import Path

from anomalib.engine import Engine

from anomalib_npgmf import Npgmf
from anomalib_npgmf.data import MVTecLOCORegions, generate_demo_dataset


def main(output: Path) -> None:
    generate_demo_dataset(output / "datasets", category="demo_box", seed=0)
    model = Npgmf(
        backbone="resnet18",  # the paper uses resnet101 with pretrained weights (pre_trained=True + backbone_weights)
        pre_trained=False,
        image_size=128,
        oce_strides=(2, 1),
        bottleneck_channels=128,
        codebook_size=128,
        prior_channels=32,
    )
    datamodule = MVTecLOCORegions(root=output / "datasets", category="demo_box", num_workers=0, train_batch_size=8)
    engine = Engine(max_epochs=8, accelerator="cpu", devices=1, default_root_dir=output / "results")
    engine.train(model, datamodule=datamodule)  # fit + test; prints anomalib's metrics and the LOCO table
    path = engine.export(model, export_type="openvino", export_root=output / "export")
    print(f"OpenVINO model: {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("example_output"))
