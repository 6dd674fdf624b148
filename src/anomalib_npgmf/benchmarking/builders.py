"""Every model and data module a benchmark uses, built the same way: same image size, same init regime, CPU-sized.

The accuracy and speed benchmarks (and ``benchmarks/inp_former_pp/compare_inp_former.py``) build their models here,
so a row called ``rd`` or ``npgmf`` means the same model in every table.
"""

from typing import Any

INP_BACKBONE = "vit_small_patch14_reg4_dinov2"

# configs/npgmf/demo_cpu.yaml's model (resnet18, 2x2 bottleneck at 128 px, small codebooks).
NPGMF_CPU_SETTINGS: dict[str, Any] = {
    "backbone": "resnet18",
    "image_size": 128,
    "oce_strides": (2, 1),
    "bottleneck_channels": 128,
    "codebook_size": 128,
    "prior_channels": 32,
    "visualizer": False,
}


def npgmf(image_size: int, pretrained: bool = False, **overrides: Any) -> Any:
    """Npgmf with the CPU config's settings (``overrides`` for ablations and multi-category runs)."""
    from anomalib_npgmf import Npgmf

    return Npgmf(**{**NPGMF_CPU_SETTINGS, "image_size": image_size, "pre_trained": pretrained, **overrides})


def inp_former_pp(image_size: int, crop_size: int, variant: str = "inp_former_pp") -> Any:
    """Our InpFormerPlusPlus on ViT-S/14-reg4 (random init), scored at the input size like anomalib's."""
    from anomalib_npgmf.models.inp_former_pp import InpFormerPlusPlus

    return InpFormerPlusPlus(
        variant=variant,
        backbone=INP_BACKBONE,
        pre_trained=False,
        image_size=image_size,
        crop_size=crop_size,
        score_size=None,
        visualizer=False,
    )


def anomalib_inp_former(image_size: int, crop_size: int) -> Any:
    """anomalib's InpFormer on the same ViT-S/14-reg4, random init.

    anomalib's InpFormer always asks timm for pretrained weights (a download, impossible offline), so it is built
    inside :func:`~anomalib_npgmf.utils.compat.timm_random_init`.
    """
    from anomalib.models import InpFormer

    from anomalib_npgmf.utils.compat import timm_random_init

    with timm_random_init():
        return InpFormer(
            encoder_name=INP_BACKBONE,
            pre_processor=InpFormer.configure_pre_processor((image_size, image_size), crop_size),
            visualizer=False,
        )


def anomalib_baseline(name: str, image_size: int, pretrained: bool = False) -> Any:
    """One of anomalib's own models (``ReverseDistillation``, ``Padim``, ``Patchcore``, ``EfficientAd``).

    CNN baselines share Npgmf's resnet18 so the comparison is about the method, not the backbone.
    """
    from anomalib import models

    cls = getattr(models, name)
    kwargs: dict[str, Any] = {
        "pre_trained": pretrained,
        "visualizer": False,
        "pre_processor": cls.configure_pre_processor((image_size, image_size)),
    }
    if name in {"ReverseDistillation", "Padim", "Patchcore"}:
        kwargs["backbone"] = "resnet18"
    if name == "EfficientAd":
        kwargs.pop("pre_trained")  # its teacher is always downloaded: the run fails offline, and says so
    if name == "Patchcore":
        kwargs["coreset_sampling_ratio"] = 0.01
        kwargs["layers"] = ("layer2", "layer3")
    return cls(**kwargs)


def crop_for_vit(image_size: int, patch: int = 14) -> int:
    """Largest crop <= ``image_size`` that is a multiple of the ViT patch."""
    return image_size // patch * patch


# ``--small`` generated data (tests): enough images for every model's fit and the LOCO metrics.
SMALL_DATA: dict[str, int] = {"n_train": 12, "n_val": 4, "n_test_good": 4, "n_test_per_defect": 1}


def loco_datamodule(root: Any, category: str, train_batch_size: int = 8) -> Any:
    """A LOCO-layout category without worker processes (2-core machine) or the LOCO report (benchmarks score it)."""
    from anomalib_npgmf.data import MVTecLOCORegions

    return MVTecLOCORegions(
        root=root,
        category=category,
        train_batch_size=train_batch_size,
        eval_batch_size=16,
        num_workers=0,
        loco_report=False,
    )
