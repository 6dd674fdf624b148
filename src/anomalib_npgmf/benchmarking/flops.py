"""How much work a model does and how fast this CPU could do it: FLOPs of one forward, the fp32 matmul peak."""

import math
import time
from typing import Any


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
