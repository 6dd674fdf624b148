"""Data: the synthetic LOCO-layout generator, a MVTec LOCO datamodule that works (pandas 3, per-defect regions) and
a multi-category datamodule for unified (one model, many categories) and few-shot training.

Names are loaded on first access: ``anomalib-npgmf generate`` needs only numpy/OpenCV, and importing the datamodules
pulls in anomalib, torch and lightning (~10 s on a cold start). ``from anomalib_npgmf.data import MVTecLOCORegions``
and the CLI's ``--data anomalib_npgmf.data.MVTecLOCORegions`` work as with eager imports.
"""

from importlib import import_module
from typing import TYPE_CHECKING

_LAZY_EXPORTS = {
    "DefectRegion": ".mvtec_loco",
    "MVTecLOCORegions": ".mvtec_loco",
    "MVTecLOCORegionsDataset": ".mvtec_loco",
    "anomaly_type_of": ".mvtec_loco",
    "load_defect_regions": ".mvtec_loco",
    "MultiCategory": ".multi_category",
    "MultiCategoryDataset": ".multi_category",
    "generate_demo_dataset": ".synthetic",
    "main_generate": ".synthetic",
}

__all__ = [
    "DefectRegion",
    "MVTecLOCORegions",
    "MVTecLOCORegionsDataset",
    "MultiCategory",
    "MultiCategoryDataset",
    "anomaly_type_of",
    "generate_demo_dataset",
    "load_defect_regions",
    "main_generate",
]

if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from .multi_category import MultiCategory, MultiCategoryDataset
    from .mvtec_loco import (
        DefectRegion,
        MVTecLOCORegions,
        MVTecLOCORegionsDataset,
        anomaly_type_of,
        load_defect_regions,
    )
    from .synthetic import generate_demo_dataset, main_generate


def __getattr__(name: str) -> object:
    """Import the module that defines ``name`` on first use."""
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
