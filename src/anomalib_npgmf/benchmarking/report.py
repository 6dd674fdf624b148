"""Report writers: the tables of the speed and accuracy benchmarks as Markdown and CSV (no measuring here)."""

import csv
import io
import math
import os
import platform
import statistics
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

from anomalib_npgmf.utils import atomic_write_text

from .measure import MIN_TIMED_CALLS
from .records import ACCURACY_METRICS, NAN, RuntimeRecord, TimingSettings, TrainTiming

TARGETS = {"openvino_fp32_speedup": 2.0, "int8_speedup": 3.0, "int8_auroc_drop": 0.005, "openvino_rss_mb": 1024.0}


COLUMNS = [  # (field, markdown header, digits)
    ("model", "model", None),
    ("runtime", "runtime", None),
    ("threads", "threads", None),
    ("timed_calls", "timed calls b1/b{n}", None),
    ("background_cores", "other procs (cores)", 2),
    ("images_per_s_b1", "img/s b1", 1),
    ("images_per_s_bn", "img/s b{n}", 1),
    ("speedup_b1", "x eager b1", 2),
    ("speedup_bn", "x eager b{n}", 2),
    ("p50_ms_b1", "p50 ms b1", 1),
    ("p95_ms_b1", "p95 ms b1", 1),
    ("peak_rss_mb", "peak RSS MB", 0),
    ("size_mb", "size MB", 1),
    ("image_auroc", "image AUROC", 3),
    ("auroc_change", "Δ AUROC vs eager", 4),
    ("gflop_per_image", "GFLOP/img", 2),
    ("gflops_achieved", "GFLOP/s", 1),
    ("percent_of_torch_peak", "% torch.matmul peak", 0),
    ("percent_of_onednn_peak", "% oneDNN peak", 0),
    ("note", "note", None),
]


def cell(value: object, digits: int | None) -> str:
    if digits is None:
        return str(value).replace("|", "/")
    if not isinstance(value, float) or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" if digits == 4 else f"{value:.{digits}f}"


def inference_markdown(rows: list[RuntimeRecord], batch_size: int) -> str:
    headers = [header.format(n=batch_size) for _, header, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(cell(getattr(row, name), digits) for name, _, digits in COLUMNS) + " |")
    return "\n".join(lines)


def inference_csv(rows: list[RuntimeRecord], batch_size: int) -> str:
    buffer = io.StringIO()
    columns = [f.name for f in fields(RuntimeRecord) if f.name != "scores"]
    writer = csv.writer(buffer)
    writer.writerow([name.replace("_bn", f"_b{batch_size}") for name in columns])
    for row in rows:
        writer.writerow([_csv_value(getattr(row, name)) for name in columns])
    return buffer.getvalue()


def _significant(value: float) -> str:
    """Four significant digits (ms, seconds, AUROC and score changes share a table), a dash for NaN."""
    return f"{value:.4g}" if math.isfinite(value) else "—"


def _csv_value(value: object) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def targets_markdown(rows: list[RuntimeRecord]) -> str:
    """Each model's targets: OpenVINO FP32 >= 2x eager (b1), INT8 >= 3x eager with AUROC within 0.005 of FP32,
    OpenVINO peak RSS <= 1 GB."""
    lines = ["| model | target | measured | met? |", "|---|---|---|---|"]
    for model in dict.fromkeys(row.model for row in rows):
        by_runtime = {row.runtime: row for row in rows if row.model == model}
        fp32, int8 = by_runtime.get("openvino-fp32"), by_runtime.get("openvino-int8")
        checks = []
        if fp32 is not None:
            checks.append(("OpenVINO FP32 ≥ 2x eager, b1", fp32.speedup_b1, TARGETS["openvino_fp32_speedup"], ">="))
        if int8 is not None:
            checks.append(("OpenVINO INT8 ≥ 3x eager, b1", int8.speedup_b1, TARGETS["int8_speedup"], ">="))
            drop = abs(int8.image_auroc - fp32.image_auroc) if fp32 is not None else NAN
            checks.append(("INT8 |AUROC − FP32 AUROC| ≤ 0.005", drop, TARGETS["int8_auroc_drop"], "<="))
        for runtime, row in by_runtime.items():
            if runtime.startswith("openvino"):
                checks.append((f"{runtime} peak RSS ≤ 1 GB", row.peak_rss_mb, TARGETS["openvino_rss_mb"], "<="))
        for label, value, limit, sense in checks:
            met = "n/a" if not math.isfinite(value) else ("yes" if _meets(value, limit, sense) else "**no**")
            shown = f"{value:.4g}" if math.isfinite(value) else "—"
            lines.append(f"| {model} | {label} | {shown} | {met} |")
    return "\n".join(lines)


def _meets(value: float, limit: float, sense: str) -> bool:
    return value >= limit if sense == ">=" else value <= limit


def training_rows(timings: list[TrainTiming], batch_size: int) -> list[dict]:
    reference = next((t for t in timings if t.model == "ReverseDistillation"), None)
    rows = []
    for timing in timings:
        per_epoch = timing.seconds_per_epoch
        ratio = per_epoch / reference.seconds_per_epoch if reference is not None else NAN
        epochs = len(timing.epoch_seconds)
        rows.append(
            {
                "model": timing.model,
                "epochs": epochs,
                "images_per_epoch": timing.images // max(1, epochs),
                "batch_size": batch_size,
                "s_per_epoch": per_epoch,
                "images_per_s": timing.images / max(1, epochs) / per_epoch if per_epoch > 0 else NAN,
                "fit_s": timing.fit_seconds,
                "x_reverse_distillation": ratio,
                "other_procs_cores": timing.background_cores,
            }
        )
    return rows


def dict_table(rows: list[dict]) -> tuple[str, str]:
    """Markdown and CSV of a list of flat dicts (same keys)."""
    if not rows:
        return "(not measured)", ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(keys)
    for row in rows:
        cells = [_significant(row[k]) if isinstance(row[k], float) else str(row[k]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
        writer.writerow([_csv_value(row[k]) for k in keys])
    return "\n".join(lines), buffer.getvalue()


def machine_facts(threads: int) -> dict[str, str]:
    """What a reader needs to compare this run with another: CPU, threads, versions, load."""
    import anomalib
    import openvino as ov
    import torch

    try:
        import nncf

        nncf_version = nncf.__version__
    except ImportError:
        nncf_version = "not installed"
    load = os.getloadavg()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "logical CPUs": str(os.cpu_count()),
        "threads": f"torch.get_num_threads() = {threads}; OpenVINO INFERENCE_NUM_THREADS = {threads}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, openvino {ov.__version__}, "
        f"nncf {nncf_version}, anomalib {anomalib.__version__}",
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown_head(command: str, facts: dict, settings: TimingSettings, image_size: int, epochs: int) -> str:
    """The top of speed.md: the command, the machine, and how every row was timed."""
    timing = (
        f"image size {image_size} px; batch 1: {settings.warmup} warm-up + {settings.iterations} timed "
        f"calls; batch {settings.batch_size}: {settings.batch_warmup} warm-up + {settings.batch_iterations} timed "
        f"calls (each phase stops early, keeping >= {MIN_TIMED_CALLS} calls, once its timed calls took "
        f"{settings.phase_seconds:g} s); images/s from the median latency; {epochs} training epoch(s) per "
        "trained model; every runtime measured in its own fresh subprocess"
    )
    lines = ["# CPU speed benchmark", "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += [f"- settings: {timing}", ""]
    return "\n".join(lines)


def write_speed_reports(
    output: Path,
    markdown_head: str,
    batch_size: int,
    rows: list[RuntimeRecord],
    timings: list[TrainTiming],
    cpu_options: list[dict],
) -> None:
    """speed.md (``markdown_head`` then every table), speed.csv, training.csv, npgmf_cpu_options.csv (atomically),
    and the tables on stdout."""
    training_md, training_csv = dict_table(training_rows(timings, batch_size))
    options_md, options_csv = dict_table(cpu_options)
    sections = {
        "Inference": inference_markdown(rows, batch_size),
        "Targets": targets_markdown(rows),
        "Training throughput (training batches of one epoch; Npgmf target ≤ 1.5x ReverseDistillation)": training_md,
        "Npgmf, torch eager: channels_last and bf16 autocast (batch-1 inference, one training step at batch "
        f"{batch_size})": options_md,
    }
    lines = [markdown_head]
    for title, body in sections.items():
        lines += [f"## {title}", "", body, ""]
    markdown = "\n".join(lines)
    atomic_write_text(output / "speed.md", markdown)
    atomic_write_text(output / "speed.csv", inference_csv(rows, batch_size))
    atomic_write_text(output / "training.csv", training_csv)
    atomic_write_text(output / "npgmf_cpu_options.csv", options_csv)
    print(markdown)
    print(f"Written: {output / 'speed.md'} (tables), {output / 'speed.csv'}, {output / 'training.csv'}, ", end="")
    print(f"{output / 'npgmf_cpu_options.csv'}; exports and subprocess logs under {output / 'work'}")


# ----------------------------------------------------------------------------------------------------- accuracy
def summarise(runs: list[dict]) -> tuple[str, str]:
    """Markdown and CSV of mean ± spread (sample standard deviation) per model and scene; failed runs say why."""
    groups = list(dict.fromkeys((run["model"], run["scene"]) for run in runs))
    header = "| model | scene | seeds | " + " | ".join(ACCURACY_METRICS) + " |"
    lines = [header, "|" + "---|" * (len(ACCURACY_METRICS) + 3)]
    notes: list[str] = []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = [f"{metric}_{statistic}" for metric in ACCURACY_METRICS for statistic in ("mean", "std")]
    writer.writerow(["model", "scene", "seeds", *columns, "note"])
    for model, scene in groups:
        rows = [run for run in runs if run["model"] == model and run["scene"] == scene]
        good = [row for row in rows if not row.get("note")]
        if not good:
            note = rows[0]["note"]
            lines.append(f"| {model} | {scene} | 0 | " + " | ".join(["n/a"] * len(ACCURACY_METRICS)) + " |")
            notes.append(f"- {model} ({scene}) could not run here: {note}")
            writer.writerow([model, scene, 0, *[""] * (2 * len(ACCURACY_METRICS)), note])
            continue
        cells, values = [], []
        for metric in ACCURACY_METRICS:
            data = [row[metric] for row in good]
            mean = statistics.fmean(data)
            spread = statistics.stdev(data) if len(data) > 1 else 0.0
            digits = 1 if metric in {"train_s", "ms_per_image"} else 3
            cells.append(f"{mean:.{digits}f} ± {spread:.{digits}f}")
            values += [f"{mean:.6f}", f"{spread:.6f}"]
        lines.append(f"| {model} | {scene} | {len(good)} | " + " | ".join(cells) + " |")
        writer.writerow([model, scene, len(good), *values, ""])
    if notes:
        lines += ["", *dict.fromkeys(notes)]
    return "\n".join(lines) + "\n", buffer.getvalue()
