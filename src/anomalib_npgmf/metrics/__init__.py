"""Metrics anomalib lacks: sPRO / AU-sPRO, the LOCO logical / structural split, per-category tables."""

from .functional import au_spro, paired_auroc_difference, rank_auroc, spro_curve
from .loco import LocoResults, format_table, write_report
from .per_category import PerCategoryImageAUROC, category_from_path, per_category_auroc
from .streaming import SPRO, SplitImageAUROC, StreamingSPRO, loco_test_metrics

__all__ = [
    "SPRO",
    "LocoResults",
    "PerCategoryImageAUROC",
    "SplitImageAUROC",
    "StreamingSPRO",
    "au_spro",
    "category_from_path",
    "format_table",
    "loco_test_metrics",
    "paired_auroc_difference",
    "per_category_auroc",
    "rank_auroc",
    "spro_curve",
    "write_report",
]
