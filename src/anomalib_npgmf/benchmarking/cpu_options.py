"""Npgmf in torch eager on a CPU: what ``channels_last`` and bf16 autocast do to latency, scores and a training step.

Specific to Npgmf's torch module on purpose (it reaches into ``model.model`` and ``model.loss`` to time one training
step without Lightning around it); the runtime rows of every other model go through anomalib's exports only.
"""

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

from . import failure_reason
from .measure import MIN_TIMED_CALLS, BackgroundLoad, image_batch, log, score_all, time_calls
from .records import NAN, TimingSettings, is_number


def npgmf_cpu_options(model: Any, images: Any, labels: list[int], settings: TimingSettings) -> list[dict]:
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
                result["inference_ms_b1"] = _options_latency(model, images, channels_last, settings)
                scores = _options_scores(model, images, channels_last, settings.batch_size)
            result["other_procs_cores"] = background.cores
            reference = scores if reference is None else reference
            result.update(_score_change(scores, reference, labels))
        except Exception as error:  # e.g. an op without a bf16 kernel: report it, keep going
            result["note"] = failure_reason(error)
    state = copy.deepcopy(model.state_dict())
    train_images = model.pre_processor(torch.from_numpy(image_batch(images, 0, settings.batch_size)))
    for result, (label, channels_last, bf16) in zip(results, variants, strict=True):
        model.load_state_dict(state)
        try:
            with BackgroundLoad() as background, _channels_last(model, channels_last):
                result["train_step_ms"] = _options_training_step(model, train_images, channels_last, bf16, settings)
            result["other_procs_cores"] = max(result.get("other_procs_cores", 0.0), background.cores)
        except Exception as error:
            result["note"] = "; ".join(filter(None, [result.get("note"), failure_reason(error)]))
        log(f"   Npgmf eager {label}: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items() if is_number(v)))
    model.load_state_dict(state)
    model.eval()
    columns = ("variant", "inference_ms_b1", "train_step_ms", "image_auroc", "max_abs_score_change")
    columns += ("other_procs_cores",)
    return [{**{k: result.get(k, NAN) for k in columns}, "note": result.get("note", "")} for result in results]


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


def _options_latency(model: Any, images: Any, channels_last: bool, settings: TimingSettings) -> float:
    """Median ms of a batch-1 forward (pre-processing included, like the runtimes' rows)."""
    import torch

    model.eval()

    def predict(batch: Any) -> None:
        with torch.inference_mode():
            model(_as_input(batch, channels_last))

    latencies = time_calls(predict, images, 1, settings.warmup, settings.iterations, settings.phase_seconds)
    return statistics.median(latencies)


def _options_scores(model: Any, images: Any, channels_last: bool, batch_size: int) -> list[float]:
    import torch

    def predict(batch: Any) -> Any:
        with torch.inference_mode():
            return model(_as_input(batch, channels_last)).pred_score.float().reshape(-1).numpy()

    return score_all(predict, images, batch_size)


def _score_change(scores: list[float], reference: list[float], labels: list[int]) -> dict[str, float]:
    from anomalib_npgmf.metrics import rank_auroc

    change = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
    return {"image_auroc": rank_auroc(scores, labels), "max_abs_score_change": change}


def _options_training_step(model: Any, images: Any, channels_last: bool, bf16: bool, settings: TimingSettings) -> float:
    """Median ms of forward + loss + backward + Adam step on one batch (the students only, as in fit)."""
    import torch

    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    model.model.train()
    optimizer = model.configure_optimizers()
    latencies = []
    try:
        for index in range(settings.batch_warmup + settings.batch_iterations):
            start = time.perf_counter()
            with _autocast(bf16):
                loss = model.loss(model.model(images))["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index >= settings.batch_warmup:
                latencies.append((time.perf_counter() - start) * 1000)
            if len(latencies) >= MIN_TIMED_CALLS and sum(latencies) > 1000 * settings.phase_seconds:
                break
    finally:
        model.model.eval()
    return statistics.median(latencies)
