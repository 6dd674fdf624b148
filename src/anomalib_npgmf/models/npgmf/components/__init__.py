"""Building blocks of NPGMF: encoder, bottlenecks, codebooks, category prior, decoders."""

from .agc import CategoryPrior, clip_text_dim, encode_category_names, resolve_clip_weights
from .codebook import GroupedVectorQuantizer
from .decoder import ReconstructionDecoder
from .encoder import FrozenEncoder
from .global_prior import GlobalNormalityPrior, pooled_descriptor
from .invariant_prior import InvariantNormalityPrior, symmetric_views, view_count, view_size
from .oce import MultiScaleBottleneck, OneClassEmbedding
from .part_prior import PartNormalityPrior
from .patch_prior import PatchNormalityPrior, patch_features
from .region_prior import RegionNormalityPrior

__all__ = [
    "CategoryPrior",
    "FrozenEncoder",
    "GlobalNormalityPrior",
    "GroupedVectorQuantizer",
    "InvariantNormalityPrior",
    "MultiScaleBottleneck",
    "OneClassEmbedding",
    "PartNormalityPrior",
    "PatchNormalityPrior",
    "ReconstructionDecoder",
    "RegionNormalityPrior",
    "clip_text_dim",
    "encode_category_names",
    "patch_features",
    "pooled_descriptor",
    "resolve_clip_weights",
    "symmetric_views",
    "view_count",
    "view_size",
]
