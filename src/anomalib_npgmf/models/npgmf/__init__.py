"""NPGMF: normality-prior guided multi-semantic fusion (arXiv 2506.18544) for anomalib."""

from .lightning_model import Npgmf
from .torch_model import NpgmfModel

__all__ = ["Npgmf", "NpgmfModel"]
