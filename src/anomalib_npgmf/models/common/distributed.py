"""Old home of two DDP helpers, kept only for ``models/npgmf/components/codebook.py``, which imports them from here.

The helpers live in :mod:`anomalib_npgmf.utils.distributed` (the metrics need them too, and metrics sit below models).
"""

from anomalib_npgmf.utils.distributed import all_reduce_sum, is_distributed

__all__ = ["all_reduce_sum", "is_distributed"]
