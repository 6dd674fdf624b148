"""The one list of models every benchmark measures (accuracy, speed, the INP-Former comparison), by one name each.

A row called ``ReverseDistillation`` is the same model in every table: same image size, init regime (random unless
``pretrained``) and CPU-sized settings. Names are anomalib's class names, plus ``_<change>`` for our ablations and
variants; :func:`resolve` also accepts the old spellings (``rd``, ``npgmf_no_global``, ``inp_former_pp``, any case).

Npgmf's settings are read from ``configs/npgmf/demo_cpu.yaml`` (the CPU demo config), not copied here: a change to
the demo config changes the benchmarked model with it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INP_BACKBONE = "vit_small_patch14_reg4_dinov2"
NPGMF_CONFIG = "npgmf/demo_cpu.yaml"
DEFAULT_TRAIN_BATCH_SIZE = 8


@dataclass(frozen=True)
class ModelSpec:
    """How to build one benchmark model and how it trains."""

    name: str
    build: Callable[[int, bool], Any]  # (image size, pretrained) -> AnomalibModule
    iterative: bool = True  # trained for --epochs; False: one pass fills its memory (Padim, Patchcore, probes)
    train_batch_size: int = DEFAULT_TRAIN_BATCH_SIZE


def config_file(relative: str) -> Path:
    """A file of the repository's ``configs/`` (``configs/`` is packaged as ``anomalib_npgmf/configs`` in a wheel)."""
    package = Path(__file__).resolve().parents[1]
    candidates = [package / "configs" / relative, package.parents[1] / "configs" / relative]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    msg = f"config {relative} not found (looked in {', '.join(str(c.parent) for c in candidates)})"
    raise FileNotFoundError(msg)


def npgmf_settings() -> dict[str, Any]:
    """The ``model.init_args`` of ``configs/npgmf/demo_cpu.yaml``."""
    import yaml

    config = yaml.safe_load(config_file(NPGMF_CONFIG).read_text())
    return dict(config["model"]["init_args"])


def npgmf(image_size: int, pretrained: bool = False, **overrides: Any) -> Any:
    """Npgmf with the CPU demo config's settings at ``image_size`` px (``overrides`` for ablations, categories)."""
    from anomalib_npgmf.models.npgmf import Npgmf

    settings = {**npgmf_settings(), "image_size": image_size, "pre_trained": pretrained, "visualizer": False}
    return Npgmf(**{**settings, **overrides})


def crop_for_vit(image_size: int, patch: int = 14) -> int:
    """Largest crop <= ``image_size`` that is a multiple of the ViT patch."""
    return image_size // patch * patch


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


def _npgmf_row(**overrides: Any) -> Callable[[int, bool], Any]:
    return lambda size, pretrained: npgmf(size, pretrained, **overrides)


def _vit_row(variant: str | None) -> Callable[[int, bool], Any]:
    """INP-Former++ (``variant``) or anomalib's InpFormer (None), the input cropped to a multiple of the patch."""

    def build(size: int, pretrained: bool) -> Any:
        if pretrained:
            msg = "the INP-Former rows run with random init here; pass weights through the model's own config"
            raise RuntimeError(msg)
        crop = crop_for_vit(size)
        return anomalib_inp_former(size, crop) if variant is None else inp_former_pp(size, crop, variant)

    return build


def _anomalib_row(name: str) -> Callable[[int, bool], Any]:
    return lambda size, pretrained: anomalib_baseline(name, size, pretrained)


def _probe_row(name: str) -> Callable[[int, bool], Any]:
    def build(size: int, pretrained: bool) -> Any:
        from .probe import PROBE_ROWS

        return PROBE_ROWS[name][0](size, pretrained)

    return build


def _part_probe_row(size: int, pretrained: bool) -> Any:
    from .part_probe import part_probe_builder

    return part_probe_builder()(size, pretrained)


PAPER = {
    "variant": "paper",
    "use_global_prior": None,
    "use_patch_prior": None,
    "use_invariant_prior": None,
    "choose_invariant_weight": False,
    "use_region_prior": None,
    "use_part_prior": None,
    "choose_part_weight": False,
    "part_in_map": False,
}
# The invariant prior at a fixed weight (its rows before 2026-12-06, when the demo config began to choose the weight)
FIXED_INVARIANT = {"use_invariant_prior": True, "choose_invariant_weight": False}
# What the rows without an invariant prior turn off (the demo config chooses its weight: both go together)
NO_INVARIANT = {"use_invariant_prior": False, "choose_invariant_weight": False}
# The part prior at the configured weight: the demo config to 2026-12-07 (fifth change), and what a row whose image
# score leaves the part prior out (no prior, other score parts, the image-level maximum) must set
FIXED_PART = {"choose_part_weight": False}
# What the rows without a part prior turn off with it (the demo config also paints it into the map)
NO_PART = {"use_part_prior": False, "part_in_map": False, **FIXED_PART}


def _specs() -> dict[str, ModelSpec]:
    npgmf_rows = {
        # the demo config: variant plus, invariant and part priors with their weights chosen at fit time
        "Npgmf": {},
        "Npgmf_fixed_part_weight": FIXED_PART,  # part prior at weight 4: the demo config to 2026-12-07
        "Npgmf_no_part": NO_PART,  # the demo config to 2026-12-06
        "Npgmf_no_invariant": {**NO_INVARIANT, **NO_PART},  # the demo config to 2026-12-05
        # the paper's model alone (issue 16); None resets the demo config's explicit switches to the variant's values
        "Npgmf_paper": {**PAPER, "raw_embedding": None},
        "Npgmf_paper_raw": {**PAPER, "raw_embedding": True},
        "Npgmf_paper_no_codebook": {**PAPER, "raw_embedding": None, "codebook_size": 0},  # the paper's own ablations
        "Npgmf_paper_no_agc": {**PAPER, "raw_embedding": None, "prior_channels": 0},
        "Npgmf_paper_k32": {**PAPER, "raw_embedding": None, "codebook_size": 32},
        "Npgmf_paper_k512": {**PAPER, "raw_embedding": None, "codebook_size": 512},
        "Npgmf_no_raw": {"raw_embedding": False},
        "Npgmf_global_in_map": {"global_in_map": True},  # the global distance spread over the map (before issue 16)
        "Npgmf_no_global": {"use_global_prior": False, "choose_invariant_weight": False},  # nothing to weigh against
        "Npgmf_no_agc": {"prior_channels": 0},
        "Npgmf_no_codebook": {"codebook_size": 0},
        "Npgmf_no_sad": {"use_structural": False},
        "Npgmf_no_lad_local": {"use_logical": False},
        "Npgmf_no_patch": {"use_patch_prior": False},
        "Npgmf_only_priors": {"fusion_weights": (0.0, 0.0, 1.0, 1.0)},
        "Npgmf_only_reconstruction": {"fusion_weights": (1.0, 1.0, 0.0, 0.0)},
        "Npgmf_unified": {},  # one model over every scene: the accuracy harness adds categories=...
        "Npgmf_score_priors": {"score_parts": ("global", "patch"), **FIXED_PART},  # issue 18: image score from priors
        "Npgmf_score_global": {"score_parts": ("global",), **FIXED_PART},
        # issue 18: the local maps' maximum calibrated on normal images' maxima before it joins the image-level priors
        "Npgmf_calibrated_score": {"calibrated_local_score": True},
        "Npgmf_local_w1": {"local_score_weight": 1.0},  # the local maximum at full weight (the demo config to 12-05)
        "Npgmf_global_grid1": {"global_prior_grid": 1},  # position-free global prior (issue 18)
        "Npgmf_global_grid1_score_global": {"global_prior_grid": 1, "score_parts": ("global",), **FIXED_PART},
        # issue 18, the invariant prior at a fixed weight (default 4 and views at half size, chosen on box)
        "Npgmf_invariant": FIXED_INVARIANT,
        # issue 18: the image-level priors fused by their maximum (rescore_image_level_fusion.py)
        "Npgmf_invariant_max": {**FIXED_INVARIANT, "image_level_fusion": "max", **FIXED_PART},
        # issue 18: its weight chosen at fit time from part-level pseudo-anomalies of the held-out normals (what the
        # demo config does since 2026-12-06; the row existed before)
        "Npgmf_invariant_auto": {"use_invariant_prior": True, "choose_invariant_weight": True},
        "Npgmf_invariant_w1_full": {**FIXED_INVARIANT, "invariant_weight": 1.0, "invariant_scale": 1.0},
        "Npgmf_invariant_w1": {**FIXED_INVARIANT, "invariant_weight": 1.0},
        "Npgmf_invariant_w2": {**FIXED_INVARIANT, "invariant_weight": 2.0},
        "Npgmf_invariant_w8": {**FIXED_INVARIANT, "invariant_weight": 8.0},
        "Npgmf_score_invariant_full": {
            **FIXED_INVARIANT,
            "score_parts": ("invariant",),
            "invariant_scale": 1.0,
            **FIXED_PART,
        },
        # issue 18 at 256 px: the demo config's oce_strides (2, 1) keep a 2x2 bottleneck at 128 px only; (2, 2) keeps
        # it at 256 px, as the shipped 256-px configs do (measured on box: no change, model README)
        "Npgmf_strides22": {"oce_strides": (2, 2)},
        "Npgmf_invariant_strides22": {**FIXED_INVARIANT, "oce_strides": (2, 2)},
        # issue 18, the region prior (opt-in): a map for missing / extra parts, painting and weight chosen on box
        "Npgmf_region": {"use_region_prior": True},  # relative painting, region_weight 3 (chosen on box by rescoring)
        # its first form, absolute painting (the rows as they were trained for the 2026-12-04 figures)
        "Npgmf_region_absolute": {"use_region_prior": True, "region_relative": False, "region_weight": 0.25},
        "Npgmf_region_w1": {"use_region_prior": True, "region_relative": False, "region_weight": 1.0},
        "Npgmf_region_w2": {"use_region_prior": True, "region_relative": False, "region_weight": 2.0},
        "Npgmf_region_w4": {"use_region_prior": True, "region_relative": False, "region_weight": 4.0},
        "Npgmf_region_d64": {
            "use_region_prior": True,
            "region_relative": False,
            "region_prior_dim": 64,
            "region_weight": 1.0,
        },
        "Npgmf_invariant_region": {**FIXED_INVARIANT, "use_region_prior": True},
        # issue 18, the part prior at weight 1 without a floor: the runs its weight and floor were chosen from on box
        # by rescoring (benchmarks/accuracy/rescore_part_weight.py --floors); the demo config since 2026-12-07
        # (second change) is weight 4 with part_floor 0, the plain Npgmf row
        "Npgmf_part": {"use_part_prior": True, "part_weight": 1.0, "part_floor": None, **FIXED_PART},
        # issue 18, the demo config without the part map (runs to rescore it from: rescore_part_map.py)
        "Npgmf_no_part_map": {"part_in_map": False},
        "Npgmf_k32": {"codebook_size": 32},
        "Npgmf_k512": {"codebook_size": 512},
    }
    specs = [ModelSpec(name, _npgmf_row(**changes)) for name, changes in npgmf_rows.items()]
    specs += [
        ModelSpec("ReverseDistillation", _anomalib_row("ReverseDistillation")),
        ModelSpec("Padim", _anomalib_row("Padim"), iterative=False),
        ModelSpec("Patchcore", _anomalib_row("Patchcore"), iterative=False),
        ModelSpec("EfficientAd", _anomalib_row("EfficientAd"), train_batch_size=1),  # it refuses any other
        ModelSpec("InpFormerPlusPlus", _vit_row("inp_former_pp")),
        ModelSpec("InpFormerPlusPlus_inp_former", _vit_row("inp_former")),  # plain INP-Former's recipe, our code
        ModelSpec("InpFormer", _vit_row(None)),
        ModelSpec("probe_mean", _probe_row("probe_mean"), iterative=False),  # no-training baseline rows (issue 18)
        ModelSpec("probe_grid2", _probe_row("probe_grid2"), iterative=False),
        ModelSpec("probe_parts", _part_probe_row, iterative=False),  # parts counted, no network (issue 18)
    ]
    return {spec.name: spec for spec in specs}


MODELS: dict[str, ModelSpec] = _specs()
ALIASES = {"rd": "ReverseDistillation", "inp_former_pp": "InpFormerPlusPlus"}  # the old benchmark spellings


def _key(name: str) -> str:
    return name.replace("_", "").lower()


def resolve(name: str) -> str:
    """The registry name of ``name``: exact, an old spelling, or the same ignoring case and underscores."""
    if name in MODELS:
        return name
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    matches = [known for known in MODELS if _key(known) == _key(name)]
    if len(matches) != 1:
        msg = f"unknown model '{name}'; valid: {', '.join(MODELS)}"
        raise ValueError(msg)
    return matches[0]
