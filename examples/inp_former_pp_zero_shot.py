"""Zero-shot: train INP-Former++ on one category, score a category it never saw (CPU, random init, ~1 min).

    python examples/inp_former_pp_zero_shot.py [OUTPUT_DIR]

The INPs are extracted from each test image itself, so nothing category-specific has to be stored: the model trained
on ``demo_box`` scores ``demo_pins`` as it is. The same from the command line:

    anomalib-npgmf generate --root datasets/demo --category demo_box
    anomalib-npgmf generate --root datasets/demo --category demo_pins --scene pins
    anomalib train --config configs/inp_former_pp/demo_cpu.yaml --default_root_dir results/zero_shot
    anomalib test --config configs/inp_former_pp/demo_cpu.yaml --data.category demo_pins \
        --ckpt_path results/zero_shot/InpFormerPlusPlus/MVTecLOCORegions/demo_box/latest/weights/lightning/model.ckpt

With random initialisation and a CPU budget the scores say little about accuracy; the paper's zero-shot figures use
pretrained DINOv2 weights (``pre_trained=True, backbone_weights=...``) and a model trained on another dataset.
"""

import sys
from pathlib import Path

from anomalib.engine import Engine

from anomalib_npgmf.data import MVTecLOCORegions, generate_demo_dataset
from anomalib_npgmf.models.inp_former_pp import InpFormerPlusPlus


def main(output: Path) -> None:
    root = output / "datasets"
    generate_demo_dataset(root, category="demo_box", scene="box", seed=0)
    generate_demo_dataset(root, category="demo_pins", scene="pins", seed=1)
    model = InpFormerPlusPlus(
        backbone="vit_small_patch14_reg4_dinov2",  # paper: vit_base_patch14_reg4_dinov2, pretrained
        pre_trained=False,
        image_size=128,
        crop_size=112,
        score_size=None,
        warmup_steps=20,
    )
    engine = Engine(max_epochs=10, accelerator="cpu", devices=1, default_root_dir=output / "results")
    engine.fit(model, datamodule=MVTecLOCORegions(root=root, category="demo_box", num_workers=0, train_batch_size=8))
    seen = engine.test(model, datamodule=MVTecLOCORegions(root=root, category="demo_box", num_workers=0))[0]
    unseen = engine.test(model, datamodule=MVTecLOCORegions(root=root, category="demo_pins", num_workers=0))[0]
    print(f"image AUROC, trained category demo_box: {seen['image_AUROC']:.3f}")
    print(f"image AUROC, unseen category demo_pins: {unseen['image_AUROC']:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("example_output/inp_former_pp_zero_shot"))
