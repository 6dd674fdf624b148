"""INP-Former++ (arXiv 2506.03660) and INP-Former (CVPR 2025) for anomalib: one-class, multi-class, few/zero-shot."""

from anomalib_npgmf.metrics.per_category import PerCategoryImageAUROC, per_category_auroc

from .lightning_model import InpFormerPlusPlus
from .torch_model import InpFormerPlusPlusModel

__all__ = ["InpFormerPlusPlus", "InpFormerPlusPlusModel", "PerCategoryImageAUROC", "per_category_auroc"]
