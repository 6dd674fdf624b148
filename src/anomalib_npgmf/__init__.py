"""anomalib-npgmf: NPGMF and INP-Former++ for anomalib, plus the MVTec LOCO evaluation anomalib lacks.

Importing this package is cheap on purpose (the start-up hook in :mod:`anomalib_npgmf._register` imports it at
every interpreter start): no imports at all here, not even ``typing``. The public names are loaded on first access.
"""

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "Npgmf": "anomalib_npgmf.models.npgmf",
    "InpFormerPlusPlus": "anomalib_npgmf.models.inp_former_pp",
    "MultiCategory": "anomalib_npgmf.data",
    "MVTecLOCORegions": "anomalib_npgmf.data",
    "generate_demo_dataset": "anomalib_npgmf.data",
    "au_spro": "anomalib_npgmf.metrics",
    "LocoResults": "anomalib_npgmf.metrics",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> object:
    """Load a public name on first use so that ``import anomalib_npgmf`` stays free of torch."""
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        msg = f"module 'anomalib_npgmf' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(__import__(module_name, fromlist=[name]), name)
    globals()[name] = value
    return value
