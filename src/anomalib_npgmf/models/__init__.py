"""Our anomalib models. Importing this module defines them as ``AnomalibModule`` subclasses, which is what makes
anomalib's ``get_model("Npgmf")`` and ``--model Npgmf`` find them (see :mod:`anomalib_npgmf._register`)."""

from .inp_former_pp import InpFormerPlusPlus
from .npgmf import Npgmf

__all__ = ["InpFormerPlusPlus", "Npgmf"]
