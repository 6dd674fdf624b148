"""Timing primitives shared by the parent and the measuring subprocess: latency, background load, peak RSS.

Stdlib and numpy only, so the child process that imports it measures its runtime, not our package.
"""

import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

NAN = float("nan")
MIN_TIMED_CALLS = 3


def log(message: str) -> None:
    """A time-stamped progress line (benchmarks run for minutes; the user sees where they are)."""
    print(f"[speed {time.strftime('%H:%M:%S')}] {message}", flush=True)


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


def image_batch(images: Any, start: int, size: int) -> Any:
    """``size`` consecutive test images from ``start`` (wrapping around), as float32 in [0, 1]."""
    import numpy as np

    indices = [(start + offset) % images.shape[0] for offset in range(size)]
    return np.ascontiguousarray(images[indices], dtype=np.float32) / np.float32(255)


def time_calls(
    predict: Callable, images: Any, size: int, warmup: int, iterations: int, budget_seconds: float
) -> list[float]:
    """Milliseconds of each timed call (input prepared outside the timed region).

    Stops early, after at least ``MIN_TIMED_CALLS``, once the timed calls took ``budget_seconds``: on a busy shared
    machine torch eager can be 30x slower than usual, and the run must still end. The row reports the count.
    """
    for index in range(warmup):
        predict(image_batch(images, index * size, size))
    latencies: list[float] = []
    for index in range(iterations):
        batch = image_batch(images, (warmup + index) * size, size)
        start = time.perf_counter()
        predict(batch)
        latencies.append((time.perf_counter() - start) * 1000)
        if len(latencies) >= MIN_TIMED_CALLS and sum(latencies) > 1000 * budget_seconds:
            break
    return latencies


def score_all(predict: Callable, images: Any, size: int) -> list[float]:
    """Image scores of every test image (the last batch padded by wrapping around; padding dropped)."""
    count = images.shape[0]
    scores: list[float] = []
    for start in range(0, count, size):
        scores += [float(s) for s in predict(image_batch(images, start, size))[: min(size, count - start)]]
    return scores


def percentile(values: Sequence[float], percent: float) -> float:
    """Linear-interpolated percentile (numpy's default rule)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
