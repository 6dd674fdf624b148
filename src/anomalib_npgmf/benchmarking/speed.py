"""CPU speed benchmark: torch eager against OpenVINO FP32, bf16 and INT8 (NNCF PTQ), ours and anomalib's models.

    python benchmarks/speed/run_speed.py --output results/speed
    anomalib-npgmf benchmark speed --output results/speed --models Npgmf ReverseDistillation --image-size 256

One run, all on generated LOCO-layout data (``generate_demo_dataset``, random init, nothing downloaded):

1. Each model (``--models``, names of :mod:`.registry`, the same models as the accuracy benchmark) is trained for
   ``--epochs`` with anomalib's ``Engine`` (Patchcore: one pass that fills its memory bank), so its scores mean
   something, then exported with anomalib's own ``Engine.export`` (:mod:`.export`): torch (pickled module), OpenVINO
   FP32, and OpenVINO INT8 through NNCF post-training quantisation (calibrated on the validation images). Models run
   without anomalib's post-processor: its clamp to [0, 1] ties scores and would blur the AUROC comparison; it is a
   few element-wise ops, irrelevant to speed.
2. Each runtime (``--runtimes``) runs in a fresh subprocess (:mod:`.child`, started by :mod:`.runner`), so its peak
   RSS covers interpreter, model load, compilation and inference, and nothing else. The child times ``--warmup`` +
   ``--iterations`` calls at batch 1 and ``--batch-warmup`` + ``--batch-iterations`` at ``--batch-size`` (warm-up
   excluded; a phase stops early after ``--phase-seconds``; images/s from the median latency), then scores the test
   set. OpenVINO models are reshaped to a static batch and compiled with ``PERFORMANCE_HINT=LATENCY``,
   ``INFERENCE_NUM_THREADS=--threads`` and an explicit precision hint; INT8 runs its non-quantised ops in f32, so its
   row shows what INT8 itself buys. An export whose batch is baked in (anomalib's Patchcore) is redone at a static
   batch 1, and its row says so.
3. FLOPs of one batch-1 forward over latency give the achieved GFLOP/s, compared with the best fp32
   ``--matmul-size``² matmul of torch.matmul and of OpenVINO on the same thread count (:mod:`.flops`).
4. Seconds per training epoch (training batches only) of Npgmf against ReverseDistillation on the same data and batch
   size, and, for Npgmf in torch eager, what ``channels_last`` and bf16 autocast do (:mod:`.cpu_options`).

Every measurement also records how many cores *other* processes used meanwhile (``/proc/stat``): on a shared
2-core machine that, not the model, can explain a slow row.

Writes ``speed.md``, ``speed.csv``, ``training.csv`` and ``npgmf_cpu_options.csv`` (:mod:`.report`), each
atomically, and prints the tables. A model or runtime that fails gets a row with the reason instead of stopping the run.
"""

import argparse
import contextlib
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anomalib_npgmf.utils import ensure_writable_folder

from . import failure_reason, registry
from .data import SMALL_DATA, dump_test_set, loco_datamodule
from .export import Exports, export_all, export_kind, size_on_disk_mb
from .flops import count_flops, matmul_peaks
from .measure import BackgroundLoad, image_batch, log, percentile
from .records import NAN, RuntimeRecord, TimingSettings, TrainTiming
from .report import cell, machine_facts, markdown_head, write_speed_reports
from .runner import run_child
from .training import timed_fit

DEFAULT_MODELS = ("Npgmf", "InpFormerPlusPlus", "ReverseDistillation", "Patchcore", "InpFormer")
RUNTIMES = ("torch", "openvino-fp32", "openvino-bf16", "openvino-int8")
CATEGORY = "demo_box"


@dataclass
class SpeedRun:
    """What one speed benchmark run measures, and how (the parsed command line, checked)."""

    output: Path
    models: list[str]
    runtimes: list[str]
    image_size: int
    epochs: int
    timing: TimingSettings
    matmul_size: int
    seed: int
    small: bool
    cpu_options: bool


@dataclass
class SharedInputs:
    """What every model of a run shares: the data set, its test images and labels, what the CPU supports."""

    root: Path
    images_path: Path
    images: Any  # uint8 (N, 3, H, W), memory-mapped
    labels: list[int]
    capabilities: list[str]

    @property
    def bf16(self) -> bool:
        """Whether OpenVINO can run bf16 on this CPU."""
        return "BF16" in self.capabilities


def build_model(name: str, size: int) -> Any:
    """The registry's model ``name`` at ``size`` px, random init, giving raw scores.

    anomalib's post-processor is removed (as anomalib itself does for a checkpoint saved without one): its clamp to
    [0, 1] ties scores and would blur the AUROC comparison, and it is a few element-wise ops. No evaluator either:
    nothing but speed and the test AUROC is measured.
    """
    model = registry.MODELS[name].build(size, False)
    model.post_processor = None
    model.evaluator = None
    return model


def measure_model(name: str, run: SpeedRun, shared: SharedInputs, peaks: dict) -> tuple[list, TrainTiming, list]:
    """Train, export and measure every runtime of one model; (rows, training timing, Npgmf's CPU-option rows)."""
    import torch
    from lightning.pytorch import seed_everything

    folder = run.output / "work" / name
    seed_everything(run.seed, workers=True)
    model = build_model(name, run.image_size)
    datamodule = loco_datamodule(shared.root, CATEGORY, run.timing.batch_size)
    epochs = run.epochs if registry.MODELS[name].iterative else 1
    engine, timing = timed_fit(name, model, datamodule, epochs, folder / "fit")
    log(f"   fit: {timing.fit_seconds:.1f} s, training epochs {[round(s, 1) for s in timing.epoch_seconds]} s")
    gflop = count_flops(model, torch.from_numpy(image_batch(shared.images, 0, 1))) / 1e9
    exports = export_all(engine, model, datamodule, folder / "export", run.image_size, run.runtimes)
    rows = [measure_runtime(name, runtime, exports, run.timing, shared, folder / runtime) for runtime in run.runtimes]
    finish_rows(rows, shared.labels, gflop, peaks)
    options = []
    if name == "Npgmf" and run.cpu_options:
        from .cpu_options import npgmf_cpu_options

        options = npgmf_cpu_options(model, shared.images, shared.labels, run.timing)
    return rows, timing, options


def measure_runtime(
    name: str, runtime: str, exports: Exports, timing: TimingSettings, shared: SharedInputs, folder: Path
) -> RuntimeRecord:
    """One row: a child's raw figures (scores kept for the AUROC), or the reason it has none."""
    row = RuntimeRecord(name, runtime)
    if runtime == "openvino-bf16" and not shared.bf16:
        row.note = f"not supported by this CPU (OPTIMIZATION_CAPABILITIES: {', '.join(shared.capabilities)})"
        return row
    artifact = exports.artifacts.get(export_kind(runtime))
    if not isinstance(artifact, Path):
        row.note = f"export failed: {failure_reason(artifact)}" if artifact is not None else "not exported"
        return row
    row.note = exports.note if runtime.startswith("openvino") else ""
    try:
        result = run_child(runtime, artifact, shared.images_path, timing, folder)
    except Exception as error:
        row.add_note(failure_reason(error))
        log(f"   {runtime}: failed ({row.note})")
        return row
    latencies_1, latencies_n = result.latencies_1, result.latencies_n
    row.threads = result.threads
    row.timed_calls = f"{len(latencies_1)}/{len(latencies_n)}"
    row.background_cores = result.background_cores
    row.p50_ms_b1 = statistics.median(latencies_1)
    row.p95_ms_b1 = percentile(latencies_1, 95)
    row.images_per_s_b1 = 1000 / row.p50_ms_b1
    row.images_per_s_bn = 1000 * timing.batch_size / statistics.median(latencies_n) if latencies_n else NAN
    row.add_note(*result.notes)
    row.peak_rss_mb = result.peak_rss_mb
    row.size_mb = size_on_disk_mb(artifact)
    row.scores = result.scores
    log(
        f"   {runtime}: {row.images_per_s_b1:.1f} img/s (b1), {cell(row.images_per_s_bn, 1)} img/s "
        f"(b{timing.batch_size}), p50 {row.p50_ms_b1:.1f} ms, RSS {row.peak_rss_mb:.0f} MB"
    )
    return row


def finish_rows(rows: list[RuntimeRecord], labels: list[int], gflop: float, peaks: dict[str, float]) -> None:
    """AUROC and its change vs torch eager, speed-ups vs torch eager, achieved GFLOP/s."""
    from anomalib_npgmf.metrics import rank_auroc

    for row in rows:
        scores, row.scores = row.scores, None
        if scores is not None:
            row.image_auroc = rank_auroc(scores, labels) if all(math.isfinite(s) for s in scores) else NAN
            if not math.isfinite(row.image_auroc):
                row.add_note("non-finite scores")
        if math.isfinite(row.p50_ms_b1):
            row.gflop_per_image = gflop
            row.gflops_achieved = gflop / (row.p50_ms_b1 / 1000)
            row.percent_of_torch_peak = 100 * row.gflops_achieved / peaks["torch.matmul"]
            row.percent_of_onednn_peak = 100 * row.gflops_achieved / peaks["OpenVINO MatMul"]
    eager = next((row for row in rows if row.runtime == "torch"), None)
    if eager is None:
        return
    for row in rows:
        row.speedup_b1 = row.images_per_s_b1 / eager.images_per_s_b1
        row.speedup_bn = row.images_per_s_bn / eager.images_per_s_bn
        row.auroc_change = row.image_auroc - eager.image_auroc


def shared_inputs(run: SpeedRun) -> SharedInputs:
    """Data set, test array, labels and bf16 support: everything every model shares."""
    import numpy as np
    import openvino as ov

    from anomalib_npgmf.data import generate_demo_dataset

    root = run.output / "data"
    generate_demo_dataset(root, CATEGORY, image_size=run.image_size, seed=run.seed, **(SMALL_DATA if run.small else {}))
    images_path = run.output / "work" / "test_images.npy"
    labels = dump_test_set(loco_datamodule(root, CATEGORY, run.timing.batch_size), images_path)
    capabilities = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    log(f"data: {root / CATEGORY}, {len(labels)} test images ({sum(labels)} anomalous)")
    return SharedInputs(root, images_path, np.load(images_path, mmap_mode="r"), labels, capabilities)


def run_benchmark(run: SpeedRun, command: str) -> None:
    """Every model, every runtime, then the reports."""
    started = time.perf_counter()
    threads = run.timing.threads
    facts = machine_facts(threads)
    shared = shared_inputs(run)
    with BackgroundLoad() as background:
        peaks = matmul_peaks(run.matmul_size, threads)
    shown = ", ".join(f"{name} {value:.0f}" for name, value in peaks.items())
    log(f"fp32 matmul peak ({run.matmul_size}², {threads} threads): {shown} GFLOP/s")
    rows, timings, cpu_options = [], [], []
    for name in _progress(run.models):
        log(f"== {name}")
        try:
            model_rows, timing, options = measure_model(name, run, shared, peaks)
        except Exception as error:
            reason = failure_reason(error)
            log(f"   {name} failed: {reason}")
            rows += [RuntimeRecord(name, runtime, note=f"model failed: {reason}") for runtime in run.runtimes]
            continue
        rows += model_rows
        timings.append(timing)
        cpu_options = options or cpu_options
    facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    facts["fp32 matmul peak"] = (
        f"{shown} GFLOP/s ({run.matmul_size}², best of 5; other processes used {background.cores:.2f} cores "
        "meanwhile). torch.matmul runs MKL, which takes its AVX2 path on AMD CPUs; torch's convolutions and OpenVINO "
        "use oneDNN's AVX-512 kernels, so the OpenVINO MatMul figure is the real fp32 ceiling"
    )
    facts["wall time"] = f"{time.perf_counter() - started:.0f} s"
    head = markdown_head(command, facts, run.timing, run.image_size, run.epochs)
    write_speed_reports(run.output, head, run.timing.batch_size, rows, timings, cpu_options)


def _progress(names: list[str]) -> Iterator[str]:
    """Model loop with a progress bar when attached to a terminal."""
    from tqdm.auto import tqdm

    yield from tqdm(names, desc="models", unit="model", disable=None)


# ----------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``anomalib-npgmf benchmark speed``."""
    parser = argparse.ArgumentParser(
        prog="anomalib-npgmf benchmark speed",
        description=__doc__.splitlines()[0],
        epilog="Models: " + ", ".join(registry.MODELS) + ". Runtimes: " + ", ".join(RUNTIMES) + ".",
    )
    parser.add_argument("--output", type=Path, default=Path("results/speed"), help="folder for speed.md/.csv")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), metavar="RUNTIME")
    parser.add_argument("--image-size", type=int, default=256, help="generated images and model input (px)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before measuring (Patchcore: 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="the second batch size timed, and training's")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batch-1 calls")
    parser.add_argument("--iterations", type=int, default=30, help="timed batch-1 calls")
    parser.add_argument("--batch-warmup", type=int, default=2, help="untimed calls at --batch-size")
    parser.add_argument("--batch-iterations", type=int, default=8, help="timed calls at --batch-size")
    parser.add_argument(
        "--phase-seconds", type=float, default=30.0, help="time budget of each timing phase (>= 3 calls are kept)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch and OpenVINO threads (default: torch's)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the matmul that measures the peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="tiny generated data set (tests)")
    parser.add_argument("--no-cpu-options", action="store_true", help="skip Npgmf's channels_last/bf16 timing")
    return parser


def _checked(arguments: argparse.Namespace, parser: argparse.ArgumentParser, threads: int) -> SpeedRun:
    """The parsed command line as a :class:`SpeedRun`; a bad value stops with the reason (exit code 2)."""
    models = []
    for name in arguments.models:
        try:
            models.append(registry.resolve(name))
        except ValueError as error:
            parser.error(f"--models: {error}")
    by_lower = {runtime.lower(): runtime for runtime in RUNTIMES}
    unknown = [value for value in arguments.runtimes if value.lower() not in by_lower]
    if unknown:
        parser.error(f"--runtimes: unknown name '{unknown[0]}'; valid: {', '.join(RUNTIMES)}")
    if not 64 <= arguments.image_size <= 1024:
        parser.error(f"--image-size must be in [64, 1024], got {arguments.image_size}")
    for name in ("epochs", "batch_size", "iterations", "batch_iterations", "matmul_size"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(arguments, name)}")
    for name in ("warmup", "batch_warmup"):
        if getattr(arguments, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(arguments, name)}")
    if arguments.phase_seconds <= 0:
        parser.error(f"--phase-seconds must be > 0, got {arguments.phase_seconds}")
    timing = TimingSettings(
        threads=threads,
        batch_size=arguments.batch_size,
        warmup=arguments.warmup,
        iterations=arguments.iterations,
        batch_warmup=arguments.batch_warmup,
        batch_iterations=arguments.batch_iterations,
        phase_seconds=arguments.phase_seconds,
    )
    return SpeedRun(
        output=arguments.output,
        models=list(dict.fromkeys(models)),
        runtimes=list(dict.fromkeys(by_lower[value.lower()] for value in arguments.runtimes)),
        image_size=arguments.image_size,
        epochs=arguments.epochs,
        timing=timing,
        matmul_size=arguments.matmul_size,
        seed=arguments.seed,
        small=arguments.small,
        cpu_options=not arguments.no_cpu_options,
    )


def main(argv: list[str] | None = None) -> int:
    """``anomalib-npgmf benchmark speed ...`` / ``python benchmarks/speed/run_speed.py ...``; 0 when written."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.threads is not None and arguments.threads < 1:
        parser.error(f"--threads must be >= 1, got {arguments.threads}")
    _checked(arguments, parser, 1)  # stop on a bad value before torch is imported
    try:
        ensure_writable_folder(arguments.output, "--output")
    except OSError as error:
        parser.error(str(error))
    with _torch_threads(arguments.threads) as threads:
        run_benchmark(_checked(arguments, parser, threads), _command_line(argv))
    return 0


@contextlib.contextmanager
def _torch_threads(requested: int | None) -> Iterator[int]:
    """torch's thread count for the run (restored afterwards: main() may run inside another program or a test)."""
    import torch

    previous = torch.get_num_threads()
    if requested is not None:
        torch.set_num_threads(requested)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _command_line(argv: list[str] | None) -> str:
    """The command as typed: the script (relative to the working folder when inside it) or the CLI subcommand."""
    if argv is not None:
        return shlex.join(["anomalib-npgmf", "benchmark", "speed", *argv])
    script = Path(sys.argv[0]).resolve()
    if script == Path(__file__).resolve():
        return shlex.join(["python", "-m", __spec__.name if __spec__ else "speed", *sys.argv[1:]])
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return shlex.join(["python", str(script), *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
