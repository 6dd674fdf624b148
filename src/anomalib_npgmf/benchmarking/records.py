"""Typed records of benchmark runs: what a run measured, field by field (stdlib only: the child imports this too)."""

import math
import statistics
from dataclasses import dataclass, field

NAN = float("nan")

ACCURACY_METRICS = (
    "logical_AUROC",
    "structural_AUROC",
    "mean_AUROC",
    "logical_AU-sPRO",
    "structural_AU-sPRO",
    "train_s",
    "ms_per_image",
)


@dataclass
class AccuracyRun:
    """One model, scene and seed of the accuracy harness (NaN figures and a note when it could not run)."""

    model: str
    scene: str
    seed: int
    figures: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ACCURACY_METRICS, NAN))
    note: str = ""

    def as_row(self) -> dict[str, object]:
        """The ``runs.csv`` line: model, scene, seed, the figures in ``ACCURACY_METRICS`` order, note."""
        return {"model": self.model, "scene": self.scene, "seed": self.seed, **self.figures, "note": self.note}


@dataclass
class RuntimeRecord:
    """One (model, runtime) line of the speed benchmark's inference table; NaN where a figure was not measured."""

    model: str
    runtime: str
    threads: str = ""
    timed_calls: str = ""
    background_cores: float = NAN
    images_per_s_b1: float = NAN
    images_per_s_bn: float = NAN
    speedup_b1: float = NAN
    speedup_bn: float = NAN
    p50_ms_b1: float = NAN
    p95_ms_b1: float = NAN
    peak_rss_mb: float = NAN
    size_mb: float = NAN
    image_auroc: float = NAN
    auroc_change: float = NAN
    gflop_per_image: float = NAN
    gflops_achieved: float = NAN
    percent_of_torch_peak: float = NAN
    percent_of_onednn_peak: float = NAN
    note: str = ""
    scores: list[float] | None = field(default=None, repr=False)  # the child's test scores, for the AUROC

    def add_note(self, *notes: str | None) -> None:
        """Append notes, ``; ``-separated, skipping empty ones."""
        self.note = "; ".join(filter(None, [self.note, *notes]))


@dataclass
class TrainTiming:
    """Seconds of each training epoch (training batches only) and of the whole ``Engine.fit``."""

    model: str
    epoch_seconds: list[float] = field(default_factory=list)
    fit_seconds: float = NAN
    images: int = 0
    background_cores: float = NAN

    @property
    def seconds_per_epoch(self) -> float:
        """Mean over epochs after the first when there are several (the first pays one-off warm-up costs)."""
        kept = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.fmean(kept) if kept else NAN


@dataclass
class TimingSettings:
    """How each runtime is timed; what the parent tells every measuring subprocess."""

    threads: int
    batch_size: int
    warmup: int
    iterations: int
    batch_warmup: int
    batch_iterations: int
    phase_seconds: float


@dataclass
class ChildResult:
    """What a measuring subprocess reports (written as JSON, read back by the parent)."""

    notes: list[str]
    latencies_1: list[float]
    latencies_n: list[float]
    peak_rss_mb: float
    threads: str
    load_seconds: float
    background_cores: float
    scores: list[float]


def is_number(value: object) -> bool:
    """A finite float (NaN and infinities are "not measured")."""
    return isinstance(value, float) and math.isfinite(value)
