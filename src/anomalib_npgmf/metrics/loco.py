"""The MVTec LOCO table: image AUROC and AU-sPRO for logical and structural anomalies apart, and their mean.

Each anomaly type is scored against the good test images only (as the LOCO papers report it): image AUROC over
{good, logical} and {good, structural}; AU-sPRO with the FPR from good images and the regions of that type. Over
several categories (one unified model), the same table per category and the mean of each cell over the categories
(``loco_report_per_category.*``), which is what LOCO papers compare.
"""

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from anomalib_npgmf.ground_truth import anomaly_type_of, load_defect_regions
from anomalib_npgmf.utils import atomic_write_text

from .functional import au_spro, rank_auroc

TYPES = ("logical", "structural")
COLUMNS = ("image_AUROC", "AU-sPRO")


@dataclass
class LocoResults:
    """Per-image predictions of a LOCO test set, and the table computed from them."""

    image_paths: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)

    def add(
        self, image_paths: Sequence[str], scores: torch.Tensor | np.ndarray, maps: torch.Tensor | np.ndarray
    ) -> None:
        """Record a batch (maps N x H x W or N x 1 x H x W), stored as float32 numpy."""
        scores = np.asarray(torch.as_tensor(scores).detach().float().cpu()).reshape(-1)
        maps = np.asarray(torch.as_tensor(maps).detach().float().cpu())
        maps = maps.reshape(len(scores), *maps.shape[-2:])
        if len(image_paths) != len(scores):
            msg = f"{len(image_paths)} image paths for {len(scores)} scores"
            raise ValueError(msg)
        self.image_paths.extend(str(p) for p in image_paths)
        self.scores.extend(float(s) for s in scores)
        self.maps.extend(maps)

    def table(self, fpr_limit: float = 0.05) -> dict[str, dict[str, float]]:
        """``{"logical": {...}, "structural": {...}, "mean": {...}}`` with image AUROC and AU-sPRO."""
        types = [anomaly_type_of(path) for path in self.image_paths]
        regions = [
            [(r.mask, r.saturation_area) for r in load_defect_regions(path)] if kind != "good" else []
            for path, kind in zip(self.image_paths, types, strict=True)
        ]
        scores = np.asarray(self.scores)
        table: dict[str, dict[str, float]] = {}
        for kind in TYPES:
            chosen = [i for i, t in enumerate(types) if t in {"good", kind}]
            labels = np.array([types[i] == kind for i in chosen])
            if labels.all() or not labels.any():
                msg = f"the test set needs good and {kind} images for the LOCO table"
                raise ValueError(msg)
            table[kind] = {
                "image_AUROC": rank_auroc(scores[chosen], labels),
                "AU-sPRO": au_spro([self.maps[i] for i in chosen], [regions[i] for i in chosen], fpr_limit),
            }
        return with_mean(table)


def with_mean(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Add the ``mean`` row (mean of logical and structural, as the LOCO papers report)."""
    return {**table, "mean": {column: float(np.mean([table[k][column] for k in TYPES])) for column in COLUMNS}}


def format_table(table: dict[str, dict[str, float]], fpr_limit: float = 0.05) -> str:
    """Markdown table (rows logical / structural / mean)."""
    lines = [f"| anomalies | image AUROC | AU-sPRO (FPR <= {fpr_limit:g}) |", "|---|---|---|"]
    lines += [f"| {row} | {v['image_AUROC']:.4f} | {v['AU-sPRO']:.4f} |" for row, v in table.items()]
    return "\n".join(lines)


def write_report(table: dict[str, dict[str, float]], folder: str | Path, fpr_limit: float = 0.05) -> list[Path]:
    """Write ``loco_report.json``, ``.csv`` and ``.md`` atomically into ``folder``."""
    folder = Path(folder)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["anomalies", *COLUMNS])
    for row, values in table.items():
        writer.writerow([row, *(f"{values[c]:.6f}" for c in COLUMNS)])
    payload = {"fpr_limit": fpr_limit, "table": table}
    return [
        atomic_write_text(folder / "loco_report.json", json.dumps(payload, indent=2) + "\n"),
        atomic_write_text(folder / "loco_report.csv", buffer.getvalue()),
        atomic_write_text(folder / "loco_report.md", format_table(table, fpr_limit) + "\n"),
    ]


PER_CATEGORY_STEM = "loco_report_per_category"
MEAN_ROW = "mean"
Table = dict[str, dict[str, float]]


def per_category_table(tables: dict[str, Table]) -> dict[str, Table]:
    """``{category: LOCO table, ..., "mean": cell-wise mean over the categories}`` (NaN cells left out of the mean)."""
    if not tables:
        msg = "no category tables to combine"
        raise ValueError(msg)
    mean = {
        row: {column: _nanmean([table[row][column] for table in tables.values()]) for column in COLUMNS}
        for row in (*TYPES, MEAN_ROW)
    }
    return {**{name: tables[name] for name in sorted(tables)}, MEAN_ROW: mean}


def _nanmean(values: list[float]) -> float:
    finite = [value for value in values if value == value]
    return float(np.mean(finite)) if finite else float("nan")


def format_per_category_table(table: dict[str, Table], fpr_limit: float = 0.05) -> str:
    """Markdown table: one row per category (and the mean), logical / structural / mean x image AUROC / AU-sPRO."""
    header = " | ".join(f"{row} {label}" for row in (*TYPES, MEAN_ROW) for label in ("AUROC", "AU-sPRO"))
    lines = [f"| category | {header} |", "|---" * 7 + "|"]
    for name, rows in table.items():
        cells = " | ".join(f"{rows[row][column]:.4f}" for row in (*TYPES, MEAN_ROW) for column in COLUMNS)
        lines.append(f"| {name} | {cells} |")
    lines.append(f"(AU-sPRO up to FPR {fpr_limit:g}; image AUROC of each type against the good images)")
    return "\n".join(lines)


def write_per_category_report(table: dict[str, Table], folder: str | Path, fpr_limit: float = 0.05) -> list[Path]:
    """Write ``loco_report_per_category.json``, ``.csv`` (one line per category and anomaly row) and ``.md``."""
    folder = Path(folder)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["category", "anomalies", *COLUMNS])
    for name, rows in table.items():
        for row, values in rows.items():
            writer.writerow([name, row, *(f"{values[c]:.6f}" for c in COLUMNS)])
    payload = {"fpr_limit": fpr_limit, "table": table}
    return [
        atomic_write_text(folder / f"{PER_CATEGORY_STEM}.json", json.dumps(payload, indent=2) + "\n"),
        atomic_write_text(folder / f"{PER_CATEGORY_STEM}.csv", buffer.getvalue()),
        atomic_write_text(folder / f"{PER_CATEGORY_STEM}.md", format_per_category_table(table, fpr_limit) + "\n"),
    ]
