"""Pieces both models share: export defaults, offline weights, DDP-safe normalisation, safe checkpoints."""

from anomalib_npgmf.utils.distributed import gather_unique_by_key

from .batches import (
    CheckedEvaluationSteps,
    as_image_size,
    batch_image_paths,
    check_finite_images,
    image_seed,
    log_losses,
)
from .blur import SeparableGaussianBlur
from .checkpoint import (
    AtomicCheckpointing,
    AtomicCheckpointIO,
    CheckpointVersionError,
    FinalCheckpoint,
    VersionedCheckpoints,
    check_version,
    plugin_callbacks,
    stamp_version,
)
from .export import PluginExportMixin, encoder_only_int8_scope
from .normalization import QuantileMapNormalizer
from .post_processing import RankPreservingPostProcessing, RankPreservingPostProcessor
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
    "RankPreservingPostProcessing",
    "RankPreservingPostProcessor",
    "SeparableGaussianBlur",
    "VersionedCheckpoints",
    "as_image_size",
    "batch_image_paths",
    "check_finite_images",
    "check_version",
    "create_timm_encoder",
    "encoder_only_int8_scope",
    "gather_unique_by_key",
    "image_seed",
    "log_losses",
    "plugin_callbacks",
    "resolve_weights_file",
    "stamp_version",
]
