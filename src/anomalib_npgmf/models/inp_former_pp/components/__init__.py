"""Building blocks of INP-Former++: encoder, INPs, decoder, residual head, scoring, schedule, per-category table."""

from .augment import few_shot_augment
from .encoder import DinoEncoder, default_encoder_layers, interpolate_pos_embed
from .layers import FeedForward, InpExtractor, InpGuidedBlock, init_trainable
from .residual import ResidualHead, corrupt_tokens, random_box_masks, unit_residual
from .schedule import WarmCosineLR, effective_warmup, warm_cosine_lr
from .scoring import MapScorer, cosine_distance_map, gaussian_kernel, top_fraction_mean

__all__ = [
    "DinoEncoder",
    "FeedForward",
    "InpExtractor",
    "InpGuidedBlock",
    "MapScorer",
    "ResidualHead",
    "WarmCosineLR",
    "corrupt_tokens",
    "cosine_distance_map",
    "default_encoder_layers",
    "effective_warmup",
    "few_shot_augment",
    "gaussian_kernel",
    "init_trainable",
    "interpolate_pos_embed",
    "random_box_masks",
    "top_fraction_mean",
    "unit_residual",
    "warm_cosine_lr",
]
