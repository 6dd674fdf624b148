"""anomalib's own exports of a trained model, one per runtime the speed benchmark measures."""

import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import failure_reason
from .measure import log

OPSET = 18  # anomalib's default opset 14 fails on Pad with torch >= 2.9


@dataclass
class Exports:
    """Each export kind (``torch``, ``fp32``, ``int8``): its file, or the exception that stopped it; and a note."""

    artifacts: dict[str, Path | BaseException] = field(default_factory=dict)
    note: str = ""  # what a reader of the OpenVINO rows must know (e.g. a batch-1 re-export)


def export_kind(runtime: str) -> str:
    """The export a runtime runs: ``torch``, ``int8`` or ``fp32`` (OpenVINO FP32 and bf16 share one IR)."""
    return {"torch": "torch", "openvino-int8": "int8"}.get(runtime, "fp32")


def export_all(engine: Any, model: Any, datamodule: Any, folder: Path, size: int, runtimes: Sequence[str]) -> Exports:
    """anomalib's exports each runtime needs (INT8: NNCF post-training quantisation on the validation images)."""
    from anomalib.deploy import CompressionType, ExportType

    wanted = list(dict.fromkeys(export_kind(runtime) for runtime in runtimes))
    openvino = {"input_size": (size, size), "onnx_kwargs": {"opset_version": OPSET}}
    jobs: dict[str, dict[str, Any]] = {
        "torch": {"export_type": ExportType.TORCH},
        "fp32": {"export_type": ExportType.OPENVINO, **openvino},
        "int8": {"export_type": ExportType.OPENVINO, "compression_type": CompressionType.INT8_PTQ, **openvino},
    }
    jobs["int8"]["datamodule"] = datamodule
    exports = Exports({kind: _export_one(engine, model, folder / kind, kind, jobs[kind]) for kind in _ordered(wanted)})
    fp32 = exports.artifacts.get("fp32")
    fixed = _fixed_batch(fp32) if isinstance(fp32, Path) else None
    if fixed is not None:
        # e.g. anomalib's Patchcore: torch.export specialises the batch of the example input, so the IR only takes
        # that batch (and INT8 calibration, at the eval batch size, fails). A static batch-1 export always works.
        exports.note = f"anomalib's OpenVINO export fixed the batch at {fixed}; measured a static batch-1 export"
        log(f"   {exports.note}")
        previous, datamodule.eval_batch_size = datamodule.eval_batch_size, 1  # anomalib calibrates on val batches
        try:
            for kind in (k for k in ("fp32", "int8") if k in wanted):
                job = {**jobs[kind], "onnx_kwargs": {"opset_version": OPSET, "dynamic_shapes": None}}
                exports.artifacts[kind] = _export_one(engine, model, folder / f"{kind}_batch1", kind, job)
        finally:
            datamodule.eval_batch_size = previous
    return exports


def _ordered(kinds: list[str]) -> list[str]:
    """Exports in a fixed order (torch, fp32, int8), whatever the order of the runtimes asked for."""
    return [kind for kind in ("torch", "fp32", "int8") if kind in kinds]


def _export_one(engine: Any, model: Any, folder: Path, kind: str, job: dict) -> Path | BaseException:
    """One ``Engine.export``; the exception instead of a path when it fails (it becomes the row's reason)."""
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch.onnx prints a progress line per pass
            path = Path(engine.export(model, export_root=folder, **job))
    except Exception as error:
        log(f"   export {kind} failed: {failure_reason(error)}")
        return error
    log(f"   export {kind}: {time.perf_counter() - start:.1f} s")
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
