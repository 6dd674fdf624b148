"""Pieces both models share: export defaults, offline weight loading, DDP-safe map normalisation."""

from .distributed import gather_unique_by_key
from .export import PluginExportMixin
from .normalization import QuantileMapNormalizer
from .weights import MissingWeightsError, create_timm_encoder, resolve_weights_file

__all__ = [
    "MissingWeightsError",
    "PluginExportMixin",
    "QuantileMapNormalizer",
    "create_timm_encoder",
    "gather_unique_by_key",
    "resolve_weights_file",
]
