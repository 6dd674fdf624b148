"""One INP-Former++ for two categories (unified multi-class), or few-shot: CPU, random init, ~2 min.

    python examples/inp_former_pp_multiclass.py [OUTPUT_DIR] [--shots N]

Trains a single model on the generated ``demo_box`` and ``demo_pins`` categories at once (with ``--shots N``: on N
normal images per category, with the official few-shot augmentation), tests it, and prints the per-category image
AUROC table with its mean (also written to ``per_category_image_auroc.csv`` in the run folder). The same from the
command line: ``anomalib train --config configs/inp_former_pp/demo_multiclass_cpu.yaml``.
"""

import argparse
from pathlib import Path

from anomalib.engine import Engine

from anomalib_npgmf.data import MultiCategory, generate_demo_dataset
from anomalib_npgmf.models.inp_former_pp import InpFormerPlusPlus


def main(output: Path, shots: int | None) -> None:
    root = output / "datasets"
    generate_demo_dataset(root, category="demo_box", scene="box", seed=0)
    generate_demo_dataset(root, category="demo_pins", scene="pins", seed=1)
    datamodule = MultiCategory(
        root=root, categories=["demo_box", "demo_pins"], n_shots=shots, seed=0, train_batch_size=8, num_workers=0
    )
    model = InpFormerPlusPlus(
        backbone="vit_small_patch14_reg4_dinov2",  # paper: vit_base_patch14_reg4_dinov2, pretrained
        pre_trained=False,
        image_size=128,
        crop_size=112,
        score_size=None,
        warmup_steps=20,
        few_shot_augment=shots is not None,
    )
    engine = Engine(max_epochs=8 if shots is None else 40, accelerator="cpu", devices=1, default_root_dir=output)
    engine.fit(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule)[0]
    for category in [*datamodule.categories, "mean"]:
        print(f"{category:>10}: image AUROC {metrics[f'image_AUROC/{category}']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=Path("example_output/inp_former_pp_multiclass"))
    parser.add_argument("--shots", type=int, default=None, help="few-shot: normal training images per category")
    arguments = parser.parse_args()
    main(arguments.output, arguments.shots)
