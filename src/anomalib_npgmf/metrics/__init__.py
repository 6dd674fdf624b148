"""MVTec LOCO metrics anomalib lacks: sPRO / AU-sPRO and the logical / structural split."""

from .functional import au_spro, spro_curve
from .loco import LocoResults, format_table, write_report
from .streaming import SPRO, SplitImageAUROC, StreamingSPRO, loco_test_metrics

__all__ = [
    "SPRO",
    "LocoResults",
    "SplitImageAUROC",
    "StreamingSPRO",
    "au_spro",
    "format_table",
    "loco_test_metrics",
    "spro_curve",
    "write_report",
]
