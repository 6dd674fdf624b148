"""CPU speed benchmark: torch eager against OpenVINO FP32, bf16 and INT8 (NNCF PTQ), ours and anomalib's models.

    python benchmarks/speed/run_speed.py --output results/speed
    anomalib-npgmf benchmark speed --output results/speed --models Npgmf ReverseDistillation --image-size 256

One run, all on generated LOCO-layout data (``generate_demo_dataset``, random init, nothing downloaded):

1. Each model (``--models``; built by :mod:`.builders`, like in the accuracy benchmark) is trained for ``--epochs``
   with anomalib's ``Engine`` (Patchcore: one pass that fills its memory bank), so its scores mean something, then
   exported with anomalib's own ``Engine.export``: torch (pickled module), OpenVINO FP32, and OpenVINO INT8 through
   NNCF post-training quantisation (calibrated on the validation images). Models run without anomalib's
   post-processor: its clamp to [0, 1] ties scores and would blur the AUROC comparison; it is a few element-wise
   ops, irrelevant to speed.
2. Each runtime (``--runtimes``) runs in a fresh subprocess, so its peak RSS (the child's ``VmHWM``, read after
   timing and before scoring; ``ru_maxrss`` would include the parent's RSS, see
   :func:`peak_rss_of_this_process_mb`) covers interpreter, model load, compilation and inference, and nothing else.
   The child times ``--warmup`` + ``--iterations`` calls at batch 1 and ``--batch-warmup`` + ``--batch-iterations``
   at ``--batch-size`` (warm-up excluded; a phase stops early after ``--phase-seconds``; images/s from the median
   latency), then scores the test set. OpenVINO models are reshaped to a static batch (one compiled model per batch
   size, as a deployment would) and compiled with ``PERFORMANCE_HINT=LATENCY``, ``INFERENCE_NUM_THREADS=--threads``
   and an explicit precision hint; INT8 runs its non-quantised ops in f32, so its row shows what INT8 itself buys.
   An export whose batch is baked in (anomalib's Patchcore) is redone at a static batch 1, and its row says so.
3. FLOPs of one batch-1 forward (``torch.utils.flop_counter``) over latency give the achieved GFLOP/s, compared with
   the best fp32 ``--matmul-size``² matmul of torch.matmul and of OpenVINO on the same thread count.
4. Seconds per training epoch (the training batches only: validation, prior fitting and checkpoints excluded) of
   Npgmf against ReverseDistillation on the same data and batch size, and, for Npgmf in torch eager, what
   ``channels_last`` and bf16 autocast do to inference latency, scores and one training step.

Every measurement also records how many cores *other* processes used meanwhile (``/proc/stat``): on a shared
2-core machine that, not the model, can explain a slow row.

Writes ``speed.md`` (all tables, the command, threads, CPU, date, load average), ``speed.csv`` (the inference table),
``training.csv`` and ``npgmf_cpu_options.csv``, each atomically, and prints the tables. A model or runtime that fails
gets a row with the reason instead of stopping the run.
"""

import argparse
import contextlib
import csv
import io
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from anomalib_npgmf.benchmarking import builders, failure_reason
from anomalib_npgmf.utils import atomic_write_text, ensure_writable_folder

MODEL_NAMES = ("Npgmf", "InpFormerPlusPlus", "ReverseDistillation", "Patchcore", "InpFormer")
RUNTIMES = ("torch", "openvino-fp32", "openvino-bf16", "openvino-int8")
OPENVINO_PRECISION = {"openvino-fp32": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}
CHILD_TIMEOUT_SECONDS = 1800
MIN_TIMED_CALLS = 3
TARGETS = {"openvino_fp32_speedup": 2.0, "int8_speedup": 3.0, "int8_auroc_drop": 0.005, "openvino_rss_mb": 1024.0}
NAN = float("nan")


# ----------------------------------------------------------------------------------------------------- results
@dataclass
class Row:
    """One (model, runtime) line of the inference table; NaN where a figure could not be measured."""

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
class Settings:
    """What the parent tells every measuring subprocess."""

    threads: int
    batch_size: int
    warmup: int
    iterations: int
    batch_warmup: int
    batch_iterations: int
    phase_seconds: float


class BackgroundLoad:
    """CPU use of *other* processes during a block, in cores: /proc/stat busy time minus our own CPU time.

    Why: on a shared 2-core machine a slow figure must say that someone else was using the cores (torch's OpenMP
    threads in particular slow down many times when one core is taken). NaN where /proc/stat is missing.
    """

    def __enter__(self) -> "BackgroundLoad":
        self.cores = NAN
        self._start = _cpu_snapshot()
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = _cpu_snapshot()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return
        other = (end[1] - self._start[1]) - (end[2] - self._start[2])
        self.cores = max(0.0, other / (end[0] - self._start[0]))


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall seconds, busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    try:
        ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    own = sum(usage.ru_utime + usage.ru_stime for usage in usages)
    return time.monotonic(), busy, own


def _log(message: str) -> None:
    print(f"[speed {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------------------------------- models
def build_model(name: str, size: int) -> Any:
    """The model the other benchmarks call ``name`` (shared builders), giving raw scores.

    anomalib's post-processor is removed (as anomalib itself does for a checkpoint saved without one): its clamp to
    [0, 1] ties scores and would blur the AUROC comparison, and it is a few element-wise ops. No evaluator either:
    nothing but speed and the test AUROC is measured.
    """
    if name == "Npgmf":
        model = builders.npgmf(size)  # configs/npgmf/demo_cpu.yaml at `size` px
    elif name == "InpFormerPlusPlus":
        model = builders.inp_former_pp(size, builders.crop_for_vit(size))
    elif name == "InpFormer":
        model = builders.anomalib_inp_former(size, builders.crop_for_vit(size))
    else:
        model = builders.anomalib_baseline(name, size)
    model.post_processor = None
    model.evaluator = None
    return model


ITERATIVE = {"Npgmf", "InpFormerPlusPlus", "ReverseDistillation", "InpFormer"}  # trained for --epochs; others: 1


# ----------------------------------------------------------------------------------------------------- data
def prepare_data(folder: Path, size: int, small: bool, seed: int) -> tuple[Path, str]:
    """Generated LOCO-layout category (reused when it already exists with the same parameters)."""
    from anomalib_npgmf.data import generate_demo_dataset

    category = "demo_box"
    generate_demo_dataset(folder, category, image_size=size, seed=seed, **(builders.SMALL_DATA if small else {}))
    return folder, category


def dump_test_set(datamodule: Any, path: Path) -> list[int]:
    """Test images as one uint8 array (N, 3, H, W) for the subprocesses (lossless: the PNGs are 8-bit); labels."""
    import numpy as np
    import torch

    datamodule.setup("test")
    images, labels = [], []
    for batch in datamodule.test_dataloader():
        images.append((batch.image * 255).round().clamp(0, 255).to(torch.uint8).numpy())
        labels += [int(label) for label in torch.as_tensor(batch.gt_label).reshape(-1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(images))
    return labels


# ----------------------------------------------------------------------------------------------------- training
def _epoch_timer(timing: TrainTiming) -> Any:
    """Lightning callback: from the start of each training epoch to its last training batch."""
    from lightning.pytorch import Callback

    class EpochTimer(Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            del trainer, pl_module
            self.start = self.last = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            del trainer, pl_module, outputs, batch_idx
            self.last = time.perf_counter()
            timing.images += int(batch.image.shape[0])

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            del trainer, pl_module
            timing.epoch_seconds.append(self.last - self.start)

    return EpochTimer()


def train(name: str, model: Any, datamodule: Any, epochs: int, folder: Path) -> tuple[Any, TrainTiming]:
    """Fit with anomalib's Engine; the engine (needed for export) and the timing."""
    from anomalib.engine import Engine

    timing = TrainTiming(name)
    engine = Engine(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=folder,
        enable_progress_bar=False,
        callbacks=[_epoch_timer(timing)],
    )
    start = time.perf_counter()
    with BackgroundLoad() as background:
        engine.fit(model, datamodule=datamodule)
    timing.fit_seconds = time.perf_counter() - start
    timing.background_cores = background.cores
    return engine, timing


# ----------------------------------------------------------------------------------------------------- export
def export_all(engine: Any, model: Any, datamodule: Any, folder: Path, size: int, runtimes: Sequence[str]) -> dict:
    """anomalib's exports each runtime needs.

    Returns {"torch" | "fp32" | "int8": path or the exception that stopped it, "note": what a reader must know}.
    """
    from anomalib.deploy import CompressionType, ExportType

    wanted = ["torch"] if "torch" in runtimes else []
    wanted += ["fp32"] if {"openvino-fp32", "openvino-bf16"} & set(runtimes) else []
    wanted += ["int8"] if "openvino-int8" in runtimes else []
    openvino = {"input_size": (size, size), "onnx_kwargs": {"opset_version": 18}}  # opset 14 fails on Pad
    jobs = {
        "torch": {"export_type": ExportType.TORCH},
        "fp32": {"export_type": ExportType.OPENVINO, **openvino},
        "int8": {"export_type": ExportType.OPENVINO, "compression_type": CompressionType.INT8_PTQ, **openvino},
    }
    jobs["int8"]["datamodule"] = datamodule
    artifacts: dict[str, Any] = {kind: _export_one(engine, model, folder / kind, kind, jobs[kind]) for kind in wanted}
    fixed = _fixed_batch(artifacts["fp32"]) if isinstance(artifacts.get("fp32"), Path) else None
    if fixed is not None:
        # e.g. anomalib's Patchcore: torch.export specialises the batch of the example input, so the IR only takes
        # that batch (and INT8 calibration, at the eval batch size, fails). A static batch-1 export always works.
        artifacts["note"] = f"anomalib's OpenVINO export fixed the batch at {fixed}; measured a static batch-1 export"
        _log(f"   {artifacts['note']}")
        previous, datamodule.eval_batch_size = datamodule.eval_batch_size, 1  # anomalib calibrates on val batches
        try:
            for kind in (k for k in ("fp32", "int8") if k in wanted):
                job = {**jobs[kind], "onnx_kwargs": {"opset_version": 18, "dynamic_shapes": None}}
                artifacts[kind] = _export_one(engine, model, folder / f"{kind}_batch1", kind, job)
        finally:
            datamodule.eval_batch_size = previous
    return artifacts


def _export_one(engine: Any, model: Any, folder: Path, kind: str, job: dict) -> Path | BaseException:
    """One ``Engine.export``; the exception instead of a path when it fails (it becomes the row's reason)."""
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch.onnx prints a progress line per pass
            path = Path(engine.export(model, export_root=folder, **job))
    except Exception as error:
        _log(f"   export {kind} failed: {failure_reason(error)}")
        return error
    _log(f"   export {kind}: {time.perf_counter() - start:.1f} s")
    return path


def _fixed_batch(path: Path) -> int | None:
    """The batch an OpenVINO IR is fixed to, or None when its batch is dynamic."""
    import openvino as ov

    dimension = ov.Core().read_model(path).input(0).get_partial_shape()[0]
    return dimension.get_length() if dimension.is_static else None


def size_on_disk_mb(path: Path) -> float:
    """The file, plus the ``.bin`` beside an OpenVINO ``.xml``."""
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


# ----------------------------------------------------------------------------------------------------- FLOPs, peak
def count_flops(model: Any, image: Any) -> float:
    """FLOPs of one forward (matmuls and convolutions; what FlopCounterMode counts)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    parameters = list(model.parameters())
    flags = [p.requires_grad for p in parameters]
    try:  # its module tracker trips over tensors that need grad inside no_grad blocks
        for parameter in parameters:
            parameter.requires_grad_(False)
        model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(image)
        return float(counter.get_total_flops())
    finally:
        for parameter, flag in zip(parameters, flags, strict=True):
            parameter.requires_grad_(flag)


def matmul_peaks(size: int, threads: int) -> dict[str, float]:
    """Best fp32 GFLOP/s of a ``size``² matmul: torch.matmul (asked for) and OpenVINO's MatMul.

    Both, because they differ by 2x on AMD CPUs: torch.matmul goes to MKL, which takes its AVX2 path there, while
    torch's convolutions and all of OpenVINO use oneDNN's AVX-512 kernels. The oneDNN figure is the real ceiling.
    """
    return {"torch.matmul": matmul_peak_gflops(size), "OpenVINO MatMul": openvino_matmul_peak_gflops(size, threads)}


def openvino_matmul_peak_gflops(size: int, threads: int, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of a ``size``² MatMul compiled by OpenVINO (oneDNN) on ``threads`` threads."""
    import numpy as np
    import openvino as ov
    from openvino import opset13

    generator = np.random.default_rng(0)
    left = generator.random((size, size), dtype=np.float32)
    parameter = opset13.parameter([size, size], np.float32)
    product = opset13.matmul(
        parameter, opset13.constant(generator.random((size, size), dtype=np.float32)), False, False
    )
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    request = ov.Core().compile_model(ov.Model([product], [parameter]), "CPU", config).create_infer_request()
    request.infer({0: left})
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: left})
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def matmul_peak_gflops(size: int, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of a ``size`` x ``size`` torch.matmul on the current thread count."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# ----------------------------------------------------------------------------------------------------- subprocess
def run_child(spec: dict, folder: Path) -> dict:
    """Measure one runtime in a fresh interpreter (``--child``); its JSON result."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = folder / "spec.json", folder / "result.json"
    result_path.unlink(missing_ok=True)
    atomic_write_text(spec_path, json.dumps({**spec, "result": str(result_path)}))
    threads = str(spec["settings"]["threads"])
    environment = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    command = [sys.executable, "-m", "anomalib_npgmf.benchmarking.speed", "--child", str(spec_path)]
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=CHILD_TIMEOUT_SECONDS, check=False
    )
    (folder / "child.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0 or not result_path.exists():
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        msg = f"subprocess exited with {completed.returncode}: {lines[-1] if lines else 'no output'}"
        raise RuntimeError(msg)
    return json.loads(result_path.read_text())


def child_main(spec_path: Path) -> int:
    """In the fresh interpreter: load, time batch 1 and batch N, read the peak RSS, then score the test set."""
    import numpy as np

    spec = json.loads(Path(spec_path).read_text())
    settings = Settings(**spec["settings"])
    images = np.load(spec["images"], mmap_mode="r")
    start = time.perf_counter()
    predictors, threads, notes = _load_predictors(spec, settings, images.shape[1:])
    load_seconds = time.perf_counter() - start
    size, warmup, iterations = settings.batch_size, settings.batch_warmup, settings.batch_iterations
    with BackgroundLoad() as background:
        budget = settings.phase_seconds
        latencies_1 = _time_calls(predictors[1], images, 1, settings.warmup, settings.iterations, budget)
        latencies_n = (
            _time_calls(predictors[size], images, size, warmup, iterations, budget) if size in predictors else []
        )
    peak_rss_mb = peak_rss_of_this_process_mb()
    scoring_size = size if size in predictors else 1
    scores = _score_all(predictors[scoring_size], images, scoring_size)
    result = {
        "notes": notes,
        "latencies_1": latencies_1,
        "latencies_n": latencies_n,
        "peak_rss_mb": peak_rss_mb,
        "threads": threads,
        "load_seconds": load_seconds,
        "background_cores": background.cores,
        "scores": scores,
    }
    atomic_write_text(spec["result"], json.dumps(result))
    return 0


def peak_rss_of_this_process_mb() -> float:
    """Peak RSS since this interpreter started: ``VmHWM``, not ``ru_maxrss``.

    Linux carries the parent's high-water mark over ``fork`` + ``exec`` into ``ru_maxrss`` (the kernel folds the
    forked copy's RSS into it at ``exec``), so a child of a 2 GB parent would report >= 2 GB whatever it does.
    ``VmHWM`` belongs to the process's own address space, which ``exec`` replaced. ``ru_maxrss`` is the fallback
    where ``/proc`` is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


def _load_predictors(spec: dict, settings: Settings, image_shape: tuple) -> tuple[dict, str, list[str]]:
    """{batch size: images (float32 numpy) -> image scores}, the threads used, and notes (a batch that failed)."""
    if spec["runtime"] == "torch":
        return _torch_predictors(spec["artifact"], settings)
    return _openvino_predictors(spec["artifact"], OPENVINO_PRECISION[spec["runtime"]], settings, image_shape)


def _torch_predictors(path: str, settings: Settings) -> tuple[dict, str]:
    import torch

    torch.set_num_threads(settings.threads)
    module = torch.load(path, map_location="cpu", weights_only=False)["model"].eval()

    def predict(batch: Any) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).pred_score.float().reshape(-1).numpy()

    return {1: predict, settings.batch_size: predict}, f"torch {torch.get_num_threads()}", []


def _openvino_predictors(
    path: str, precision: str, settings: Settings, image_shape: tuple
) -> tuple[dict, str, list[str]]:
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": settings.threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    predictors, notes = {}, []
    threads = ""
    for batch_size in dict.fromkeys((1, settings.batch_size)):
        model = core.read_model(path)
        try:
            model.reshape([batch_size, *image_shape])  # static batch: what a deployment compiles
        except Exception as error:  # a graph with a batch baked in; batch 1 must work, others may not
            if batch_size == 1:
                raise
            reason = failure_reason(error)[:60]
            notes.append(f"batch {batch_size} impossible, the graph has its batch baked in ({reason}...)")
            continue
        compiled = core.compile_model(model, "CPU", config)
        threads = f"OV {compiled.get_property('INFERENCE_NUM_THREADS')}"
        predictors[batch_size] = _openvino_call(compiled)
    return predictors, threads, notes


def _openvino_call(compiled: Any) -> Callable[[Any], Any]:
    request = compiled.create_infer_request()
    output = compiled.output("pred_score")

    def predict(batch: Any) -> Any:
        request.infer({0: batch}, share_inputs=True)
        return request.get_tensor(output).data.reshape(-1).astype("float64")

    return predict


def _batch(images: Any, start: int, size: int) -> Any:
    """``size`` consecutive test images from ``start`` (wrapping around), as float32 in [0, 1]."""
    import numpy as np

    indices = [(start + offset) % images.shape[0] for offset in range(size)]
    return np.ascontiguousarray(images[indices], dtype=np.float32) / np.float32(255)


def _time_calls(
    predict: Callable, images: Any, size: int, warmup: int, iterations: int, budget_seconds: float
) -> list[float]:
    """Milliseconds of each timed call (input prepared outside the timed region).

    Stops early, after at least ``MIN_TIMED_CALLS``, once the timed calls took ``budget_seconds``: on a busy shared
    machine torch eager can be 30x slower than usual, and the run must still end. The row reports the count.
    """
    for index in range(warmup):
        predict(_batch(images, index * size, size))
    latencies: list[float] = []
    for index in range(iterations):
        batch = _batch(images, (warmup + index) * size, size)
        start = time.perf_counter()
        predict(batch)
        latencies.append((time.perf_counter() - start) * 1000)
        if len(latencies) >= MIN_TIMED_CALLS and sum(latencies) > 1000 * budget_seconds:
            break
    return latencies


def _score_all(predict: Callable, images: Any, size: int) -> list[float]:
    """Image scores of every test image (the last batch padded by wrapping around; padding dropped)."""
    count = images.shape[0]
    scores: list[float] = []
    for start in range(0, count, size):
        scores += [float(s) for s in predict(_batch(images, start, size))[: min(size, count - start)]]
    return scores


# ----------------------------------------------------------------------------------------------------- one model
def measure_model(name: str, arguments: argparse.Namespace, data: dict, peaks: dict) -> tuple[list, Any]:
    """Train, export and measure every runtime of one model; (rows, training timing or None)."""
    import torch
    from lightning.pytorch import seed_everything

    folder = arguments.output / "work" / name
    seed_everything(arguments.seed, workers=True)
    model = build_model(name, arguments.image_size)
    datamodule = builders.loco_datamodule(data["root"], data["category"], arguments.batch_size)
    epochs = arguments.epochs if name in ITERATIVE else 1
    engine, timing = train(name, model, datamodule, epochs, folder / "fit")
    _log(f"   fit: {timing.fit_seconds:.1f} s, training epochs {[round(s, 1) for s in timing.epoch_seconds]} s")
    image = torch.from_numpy(_batch(data["images"], 0, 1))
    gflop = count_flops(model, image) / 1e9
    artifacts = export_all(engine, model, datamodule, folder / "export", arguments.image_size, arguments.runtimes)
    rows = [
        _measure_runtime(name, runtime, artifacts, arguments, data, folder / runtime) for runtime in arguments.runtimes
    ]
    _finish_rows(rows, data["labels"], gflop, peaks)
    if name == "Npgmf" and not arguments.no_cpu_options:
        data["cpu_options"] = npgmf_cpu_options(model, data["images"], data["labels"], arguments)
    return rows, timing


def _measure_runtime(name: str, runtime: str, artifacts: dict, arguments: argparse.Namespace, data: dict, folder: Path):
    """One row: a child's raw figures (scores kept for the AUROC), or the reason it has none."""
    row = Row(name, runtime)
    if runtime == "openvino-bf16" and not data["bf16"]:
        row.note = f"not supported by this CPU (OPTIMIZATION_CAPABILITIES: {', '.join(data['capabilities'])})"
        return row
    kind = {"torch": "torch", "openvino-int8": "int8"}.get(runtime, "fp32")
    artifact = artifacts.get(kind)
    if isinstance(artifact, BaseException) or artifact is None:
        row.note = f"export failed: {failure_reason(artifact)}" if artifact is not None else "not exported"
        return row
    row.note = artifacts.get("note", "") if runtime.startswith("openvino") else ""
    spec = {"runtime": runtime, "artifact": str(artifact), "images": str(data["images_path"])}
    spec["settings"] = asdict(data["settings"])
    try:
        result = run_child(spec, folder)
    except Exception as error:
        row.note = "; ".join(filter(None, [row.note, failure_reason(error)]))
        _log(f"   {runtime}: failed ({row.note})")
        return row
    _fill_row(row, result, data["settings"].batch_size, size_on_disk_mb(artifact))
    _log(
        f"   {runtime}: {row.images_per_s_b1:.1f} img/s (b1), {_cell(row.images_per_s_bn, 1)} img/s "
        f"(b{data['settings'].batch_size}), p50 {row.p50_ms_b1:.1f} ms, RSS {row.peak_rss_mb:.0f} MB"
    )
    return row


def _fill_row(row: Row, result: dict, batch_size: int, size_mb: float) -> None:
    latencies_1, latencies_n = result["latencies_1"], result["latencies_n"]
    row.threads = result["threads"]
    row.timed_calls = f"{len(latencies_1)}/{len(latencies_n)}"
    row.background_cores = result["background_cores"]
    row.p50_ms_b1 = statistics.median(latencies_1)
    row.p95_ms_b1 = _percentile(latencies_1, 95)
    row.images_per_s_b1 = 1000 / row.p50_ms_b1
    row.images_per_s_bn = 1000 * batch_size / statistics.median(latencies_n) if latencies_n else NAN
    row.note = "; ".join(filter(None, [row.note, *result["notes"]]))
    row.peak_rss_mb = result["peak_rss_mb"]
    row.size_mb = size_mb
    row.scores = result["scores"]


def _percentile(values: Sequence[float], percent: float) -> float:
    """Linear-interpolated percentile (numpy's default rule)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _finish_rows(rows: list[Row], labels: list[int], gflop: float, peaks: dict[str, float]) -> None:
    """AUROC and its change vs torch eager, speed-ups vs torch eager, achieved GFLOP/s."""
    from anomalib_npgmf.metrics import rank_auroc

    for row in rows:
        scores, row.scores = row.scores, None
        if scores is not None:
            row.image_auroc = rank_auroc(scores, labels) if all(math.isfinite(s) for s in scores) else NAN
            if not math.isfinite(row.image_auroc):
                row.note = (row.note + "; " if row.note else "") + "non-finite scores"
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


def _failed_rows(name: str, runtimes: Sequence[str], error: BaseException) -> list[Row]:
    reason = failure_reason(error)
    _log(f"   {name} failed: {reason}")
    return [Row(name, runtime, note=f"model failed: {reason}") for runtime in runtimes]


# ----------------------------------------------------------------------------------------------------- Npgmf options
def npgmf_cpu_options(model: Any, images: Any, labels: list[int], arguments: argparse.Namespace) -> list[dict]:
    """Npgmf in torch eager, per memory format / autocast: batch-1 latency, test AUROC, one training step.

    All inference variants run before any training step (a step changes the weights); every training variant
    starts from the same weights and optimiser state.
    """
    import copy

    import torch

    variants = [("fp32 (baseline)", False, False), ("channels_last", True, False)]
    variants += [("bf16 autocast", False, True), ("channels_last + bf16 autocast", True, True)]
    results = [{"variant": label} for label, _, _ in variants]
    reference = None
    for result, (_, channels_last, bf16) in zip(results, variants, strict=True):
        try:
            with BackgroundLoad() as background, _channels_last(model, channels_last), _autocast(bf16):
                result["inference_ms_b1"] = _options_latency(model, images, channels_last, arguments)
                scores = _options_scores(model, images, channels_last, arguments.batch_size)
            result["other_procs_cores"] = background.cores
            reference = scores if reference is None else reference
            result.update(_score_change(scores, reference, labels))
        except Exception as error:  # e.g. an op without a bf16 kernel: report it, keep going
            result["note"] = failure_reason(error)
    state = copy.deepcopy(model.state_dict())
    train_images = model.pre_processor(torch.from_numpy(_batch(images, 0, arguments.batch_size)))
    for result, (label, channels_last, bf16) in zip(results, variants, strict=True):
        model.load_state_dict(state)
        try:
            with BackgroundLoad() as background, _channels_last(model, channels_last):
                result["train_step_ms"] = _options_training_step(model, train_images, channels_last, bf16, arguments)
            result["other_procs_cores"] = max(result.get("other_procs_cores", 0.0), background.cores)
        except Exception as error:
            result["note"] = "; ".join(filter(None, [result.get("note"), failure_reason(error)]))
        _log(f"   Npgmf eager {label}: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items() if _is_number(v)))
    model.load_state_dict(state)
    model.eval()
    columns = ("variant", "inference_ms_b1", "train_step_ms", "image_auroc", "max_abs_score_change")
    columns += ("other_procs_cores",)
    return [{**{k: result.get(k, NAN) for k in columns}, "note": result.get("note", "")} for result in results]


def _is_number(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value)


@contextlib.contextmanager
def _channels_last(model: Any, enabled: bool) -> Iterator[None]:
    """The model's 4-d weights in channels_last while inside, contiguous again afterwards."""
    import torch

    if enabled:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


def _autocast(enabled: bool) -> Any:
    """bf16 autocast on CPU (forward passes only: backward runs outside it, as PyTorch recommends)."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _as_input(array: Any, channels_last: bool) -> Any:
    import torch

    tensor = torch.from_numpy(array)
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


def _options_latency(model: Any, images: Any, channels_last: bool, arguments: argparse.Namespace) -> float:
    """Median ms of a batch-1 forward (pre-processing included, like the runtimes' rows)."""
    import torch

    model.eval()

    def predict(batch: Any) -> None:
        with torch.inference_mode():
            model(_as_input(batch, channels_last))

    latencies = _time_calls(predict, images, 1, arguments.warmup, arguments.iterations, arguments.phase_seconds)
    return statistics.median(latencies)


def _options_scores(model: Any, images: Any, channels_last: bool, batch_size: int) -> list[float]:
    import torch

    def predict(batch: Any) -> Any:
        with torch.inference_mode():
            return model(_as_input(batch, channels_last)).pred_score.float().reshape(-1).numpy()

    return _score_all(predict, images, batch_size)


def _score_change(scores: list[float], reference: list[float], labels: list[int]) -> dict[str, float]:
    from anomalib_npgmf.metrics import rank_auroc

    change = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
    return {"image_auroc": rank_auroc(scores, labels), "max_abs_score_change": change}


def _options_training_step(
    model: Any, images: Any, channels_last: bool, bf16: bool, arguments: argparse.Namespace
) -> float:
    """Median ms of forward + loss + backward + Adam step on one batch (the students only, as in fit)."""
    import torch

    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    model.model.train()
    optimizer = model.configure_optimizers()
    latencies = []
    try:
        for index in range(arguments.batch_warmup + arguments.batch_iterations):
            start = time.perf_counter()
            with _autocast(bf16):
                loss = model.loss(model.model(images))["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index >= arguments.batch_warmup:
                latencies.append((time.perf_counter() - start) * 1000)
            if len(latencies) >= MIN_TIMED_CALLS and sum(latencies) > 1000 * arguments.phase_seconds:
                break
    finally:
        model.model.eval()
    return statistics.median(latencies)


# ----------------------------------------------------------------------------------------------------- report
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


def _cell(value: object, digits: int | None) -> str:
    if digits is None:
        return str(value).replace("|", "/")
    if not isinstance(value, float) or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" if digits == 4 else f"{value:.{digits}f}"


def inference_markdown(rows: list[Row], batch_size: int) -> str:
    headers = [header.format(n=batch_size) for _, header, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(getattr(row, name), digits) for name, _, digits in COLUMNS) + " |")
    return "\n".join(lines)


def inference_csv(rows: list[Row], batch_size: int) -> str:
    buffer = io.StringIO()
    columns = [f.name for f in fields(Row) if f.name != "scores"]
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


def targets_markdown(rows: list[Row]) -> str:
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
        "cpu": _cpu_model(),
        "logical CPUs": str(os.cpu_count()),
        "threads": f"torch.get_num_threads() = {threads}; OpenVINO INFERENCE_NUM_THREADS = {threads}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, openvino {ov.__version__}, "
        f"nncf {nncf_version}, anomalib {anomalib.__version__}",
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_markdown(command: str, facts: dict, arguments: argparse.Namespace, sections: dict[str, str]) -> str:
    settings = (
        f"image size {arguments.image_size} px; batch 1: {arguments.warmup} warm-up + {arguments.iterations} timed "
        f"calls; batch {arguments.batch_size}: {arguments.batch_warmup} warm-up + {arguments.batch_iterations} timed "
        f"calls (each phase stops early, keeping >= {MIN_TIMED_CALLS} calls, once its timed calls took "
        f"{arguments.phase_seconds:g} s); images/s from the median latency; {arguments.epochs} training epoch(s) per "
        "trained model; every runtime measured in its own fresh subprocess"
    )
    lines = ["# CPU speed benchmark", "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += [f"- settings: {settings}", ""]
    for title, body in sections.items():
        lines += [f"## {title}", "", body, ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- CLI
def _choices(values: Sequence[str], valid: Sequence[str], option: str, parser: argparse.ArgumentParser) -> list:
    """Case-insensitive names, in the canonical spelling; an unknown one stops with the list of valid ones."""
    by_lower = {name.lower(): name for name in valid}
    chosen = []
    for value in values:
        if value.lower() not in by_lower:
            parser.error(f"{option}: unknown name '{value}'; valid: {', '.join(valid)}")
        chosen.append(by_lower[value.lower()])
    return list(dict.fromkeys(chosen))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomalib-npgmf benchmark speed",
        description=__doc__.splitlines()[0],
        epilog="Models: " + ", ".join(MODEL_NAMES) + ". Runtimes: " + ", ".join(RUNTIMES) + ".",
    )
    parser.add_argument("--output", type=Path, default=Path("results/speed"), help="folder for speed.md/.csv")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), metavar="NAME")
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
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser


def _check_arguments(arguments: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    arguments.models = _choices(arguments.models, MODEL_NAMES, "--models", parser)
    arguments.runtimes = _choices(arguments.runtimes, RUNTIMES, "--runtimes", parser)
    if not 64 <= arguments.image_size <= 1024:
        parser.error(f"--image-size must be in [64, 1024], got {arguments.image_size}")
    positive = ("epochs", "batch_size", "iterations", "batch_iterations", "matmul_size")
    for name in positive:
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(arguments, name)}")
    for name in ("warmup", "batch_warmup"):
        if getattr(arguments, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(arguments, name)}")
    if arguments.phase_seconds <= 0:
        parser.error(f"--phase-seconds must be > 0, got {arguments.phase_seconds}")
    if arguments.threads is not None and arguments.threads < 1:
        parser.error(f"--threads must be >= 1, got {arguments.threads}")


def main(argv: list[str] | None = None) -> int:
    """``anomalib-npgmf benchmark speed ...`` / ``python benchmarks/speed/run_speed.py ...``; 0 when written."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.child is not None:
        return child_main(arguments.child)
    _check_arguments(arguments, parser)
    try:
        ensure_writable_folder(arguments.output, "--output")
    except OSError as error:
        parser.error(str(error))
    with _torch_threads(arguments.threads) as threads:
        arguments.threads = threads
        run(arguments, _command_line(argv))
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


def run(arguments: argparse.Namespace, command: str) -> None:
    """Every model, every runtime, then the reports."""
    started = time.perf_counter()
    facts = machine_facts(arguments.threads)
    data = _shared_inputs(arguments)
    with BackgroundLoad() as background:
        peaks = matmul_peaks(arguments.matmul_size, arguments.threads)
    shown = ", ".join(f"{name} {value:.0f}" for name, value in peaks.items())
    _log(f"fp32 matmul peak ({arguments.matmul_size}², {arguments.threads} threads): {shown} GFLOP/s")
    rows, timings = [], []
    for name in _progress(arguments.models):
        _log(f"== {name}")
        try:
            model_rows, timing = measure_model(name, arguments, data, peaks)
        except Exception as error:
            rows += _failed_rows(name, arguments.runtimes, error)
            continue
        rows += model_rows
        timings.append(timing)
    facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    facts["fp32 matmul peak"] = (
        f"{shown} GFLOP/s ({arguments.matmul_size}², best of 5; other processes used {background.cores:.2f} cores "
        "meanwhile). torch.matmul runs MKL, which takes its AVX2 path on AMD CPUs; torch's convolutions and OpenVINO "
        "use oneDNN's AVX-512 kernels, so the OpenVINO MatMul figure is the real fp32 ceiling"
    )
    facts["wall time"] = f"{time.perf_counter() - started:.0f} s"
    write_reports(arguments, command, facts, rows, timings, data.get("cpu_options", []))


def _shared_inputs(arguments: argparse.Namespace) -> dict:
    """Data set, test array, labels, bf16 support and the children's settings: everything every model shares."""
    import numpy as np
    import openvino as ov

    root, category = prepare_data(arguments.output / "data", arguments.image_size, arguments.small, arguments.seed)
    images_path = arguments.output / "work" / "test_images.npy"
    labels = dump_test_set(builders.loco_datamodule(root, category, arguments.batch_size), images_path)
    capabilities = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    _log(f"data: {root / category}, {len(labels)} test images ({sum(labels)} anomalous)")
    settings = Settings(
        threads=arguments.threads,
        batch_size=arguments.batch_size,
        warmup=arguments.warmup,
        iterations=arguments.iterations,
        batch_warmup=arguments.batch_warmup,
        batch_iterations=arguments.batch_iterations,
        phase_seconds=arguments.phase_seconds,
    )
    return {
        "root": root,
        "category": category,
        "images_path": images_path,
        "images": np.load(images_path, mmap_mode="r"),
        "labels": labels,
        "bf16": "BF16" in capabilities,
        "capabilities": capabilities,
        "settings": settings,
    }


def _progress(names: list[str]) -> Iterator[str]:
    """Model loop with a progress bar when attached to a terminal."""
    from tqdm.auto import tqdm

    yield from tqdm(names, desc="models", unit="model", disable=None)


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


def write_reports(
    arguments: argparse.Namespace,
    command: str,
    facts: dict,
    rows: list[Row],
    timings: list[TrainTiming],
    cpu_options: list[dict],
) -> None:
    """speed.md, speed.csv, training.csv, npgmf_cpu_options.csv (atomically) and the tables on stdout."""
    batch = arguments.batch_size
    training_md, training_csv = dict_table(training_rows(timings, batch))
    options_md, options_csv = dict_table(cpu_options)
    sections = {
        "Inference": inference_markdown(rows, batch),
        "Targets": targets_markdown(rows),
        "Training throughput (training batches of one epoch; Npgmf target ≤ 1.5x ReverseDistillation)": training_md,
        "Npgmf, torch eager: channels_last and bf16 autocast (batch-1 inference, one training step at batch "
        f"{batch})": options_md,
    }
    markdown = build_markdown(command, facts, arguments, sections)
    output = arguments.output
    atomic_write_text(output / "speed.md", markdown)
    atomic_write_text(output / "speed.csv", inference_csv(rows, batch))
    atomic_write_text(output / "training.csv", training_csv)
    atomic_write_text(output / "npgmf_cpu_options.csv", options_csv)
    print(markdown)
    print(f"Written: {output / 'speed.md'} (tables), {output / 'speed.csv'}, {output / 'training.csv'}, ", end="")
    print(f"{output / 'npgmf_cpu_options.csv'}; exports and subprocess logs under {output / 'work'}")


if __name__ == "__main__":
    raise SystemExit(main())
