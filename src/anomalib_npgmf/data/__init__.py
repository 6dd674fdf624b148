"""Data: the synthetic LOCO-layout generator and a MVTec LOCO datamodule that works (pandas 3, per-defect regions)."""

from .mvtec_loco import DefectRegion, MVTecLOCO, MVTecLOCODataset, anomaly_type_of, load_defect_regions
from .synthetic import generate_demo_dataset

__all__ = [
    "DefectRegion",
    "MVTecLOCO",
    "MVTecLOCODataset",
    "anomaly_type_of",
    "generate_demo_dataset",
    "load_defect_regions",
]
