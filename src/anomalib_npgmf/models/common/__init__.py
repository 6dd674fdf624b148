"""Pieces both models share: export defaults, offline weights, DDP-safe normalisation, safe checkpoints."""

from anomalib_npgmf.utils.distributed import gather_unique_by_key

from .batches import CheckedEvaluationSteps, batch_image_paths, check_finite_images
from .blur import SeparableGaussianBlur
from .checkpoint import (
    AtomicCheckpointing,
    AtomicCheckpointIO,
    CheckpointVersionError,
    FinalCheckpoint,
    VersionedCheckpoints,
    check_version,
    stamp_version,
)
from .export import PluginExportMixin, encoder_only_int8_scope
from .normalization import QuantileMapNormalizer
from .weights import MissingWeightsError, create_timm_encoder, resolve_weights_file

__all__ = [
    "AtomicCheckpointIO",
    "AtomicCheckpointing",
    "CheckedEvaluationSteps",
    "CheckpointVersionError",
    "FinalCheckpoint",
    "MissingWeightsError",
    "PluginExportMixin",
    "QuantileMapNormalizer",
    "SeparableGaussianBlur",
    "VersionedCheckpoints",
    "batch_image_paths",
    "check_finite_images",
    "check_version",
    "create_timm_encoder",
    "encoder_only_int8_scope",
    "gather_unique_by_key",
    "resolve_weights_file",
    "stamp_version",
]
