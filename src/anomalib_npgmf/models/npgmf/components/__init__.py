"""Building blocks of NPGMF: encoder, bottlenecks, codebooks, category prior, decoders."""

from .agc import CategoryPrior, clip_text_dim, encode_category_names, resolve_clip_weights
from .codebook import GroupedVectorQuantizer
from .decoder import ReconstructionDecoder
from .encoder import FrozenEncoder
from .global_prior import GlobalNormalityPrior, pooled_descriptor
from .oce import MultiScaleBottleneck, OneClassEmbedding

__all__ = [
    "CategoryPrior",
    "FrozenEncoder",
    "GlobalNormalityPrior",
    "GroupedVectorQuantizer",
    "MultiScaleBottleneck",
    "OneClassEmbedding",
    "ReconstructionDecoder",
    "clip_text_dim",
    "encode_category_names",
    "pooled_descriptor",
    "resolve_clip_weights",
]
