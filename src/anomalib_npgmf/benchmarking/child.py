"""The measuring subprocess: ``python -m anomalib_npgmf.benchmarking.child spec.json``.

Runs in a fresh interpreter so its peak RSS covers interpreter, model load, compilation and inference, and nothing
else: it imports numpy, the runtime it measures (torch or OpenVINO) and the light timing helpers of
:mod:`.measure`, never the harness, the data code or the models' training code. Loads the exported model, times
batch 1 and batch N, reads the peak RSS, then scores the test images, and writes a :class:`.records.ChildResult`.
"""

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from anomalib_npgmf.benchmarking import failure_reason
from anomalib_npgmf.benchmarking.measure import BackgroundLoad, peak_rss_of_this_process_mb, score_all, time_calls
from anomalib_npgmf.benchmarking.records import ChildResult, TimingSettings
from anomalib_npgmf.utils import atomic_write_text

OPENVINO_PRECISION = {"openvino-fp32": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}


def measure(spec_path: Path) -> int:
    """Load, time batch 1 and batch N, read the peak RSS, then score the test set; the result beside the spec."""
    import numpy as np

    spec = json.loads(Path(spec_path).read_text())
    settings = TimingSettings(**spec["settings"])
    images = np.load(spec["images"], mmap_mode="r")
    start = time.perf_counter()
    predictors, threads, notes = _load_predictors(spec, settings, images.shape[1:])
    load_seconds = time.perf_counter() - start
    size, warmup, iterations = settings.batch_size, settings.batch_warmup, settings.batch_iterations
    with BackgroundLoad() as background:
        budget = settings.phase_seconds
        latencies_1 = time_calls(predictors[1], images, 1, settings.warmup, settings.iterations, budget)
        latencies_n = []
        if size in predictors:
            latencies_n = time_calls(predictors[size], images, size, warmup, iterations, budget)
    peak_rss_mb = peak_rss_of_this_process_mb()
    scoring_size = size if size in predictors else 1
    result = ChildResult(
        notes=notes,
        latencies_1=latencies_1,
        latencies_n=latencies_n,
        peak_rss_mb=peak_rss_mb,
        threads=threads,
        load_seconds=load_seconds,
        background_cores=background.cores,
        scores=score_all(predictors[scoring_size], images, scoring_size),
    )
    atomic_write_text(spec["result"], json.dumps(asdict(result)))
    return 0


def _load_predictors(spec: dict, settings: TimingSettings, image_shape: tuple) -> tuple[dict, str, list[str]]:
    """{batch size: images (float32 numpy) -> image scores}, the threads used, and notes (a batch that failed)."""
    if spec["runtime"] == "torch":
        return _torch_predictors(spec["artifact"], settings)
    return _openvino_predictors(spec["artifact"], OPENVINO_PRECISION[spec["runtime"]], settings, image_shape)


def _torch_predictors(path: str, settings: TimingSettings) -> tuple[dict, str, list[str]]:
    import torch

    torch.set_num_threads(settings.threads)
    module = torch.load(path, map_location="cpu", weights_only=False)["model"].eval()

    def predict(batch: Any) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).pred_score.float().reshape(-1).numpy()

    return {1: predict, settings.batch_size: predict}, f"torch {torch.get_num_threads()}", []


def _openvino_predictors(
    path: str, precision: str, settings: TimingSettings, image_shape: tuple
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


if __name__ == "__main__":
    raise SystemExit(measure(Path(sys.argv[1])))
