"""MVTec LOCO metrics anomalib lacks: sPRO / AU-sPRO and the logical / structural split."""

from .functional import au_spro, spro_curve
from .loco import LocoResults, format_table, write_report

__all__ = ["LocoResults", "au_spro", "format_table", "spro_curve", "write_report"]
