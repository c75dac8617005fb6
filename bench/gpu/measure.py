"""Timing, FLOP counting and memory: CUDA events on a GPU, the host clock on a CPU (METHOD.md's rules:
warm up first, repeat, report the median, synchronize around host-clock regions)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(call: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """(result, seconds) of one call, the device drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    result = call()
    synchronize(device)
    return result, time.perf_counter() - started


def median_seconds(call: Callable[[], Any], device: torch.device, repeats: int) -> tuple[Any, float]:
    """(last result, median seconds) over `repeats` calls: CUDA events on a GPU, else the host clock."""
    times, result = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            result, seconds = timed_call(call, device)
            times.append(seconds)
    return result, statistics.median(times)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """Measured dense matmul rate (FLOP/s) on random data, rotating three operand sets (no cache reuse)."""
    generator = torch.Generator(device=device).manual_seed(0)
    operands = [
        (
            torch.randn(size, size, device=device, generator=generator).to(dtype),
            torch.randn(size, size, device=device, generator=generator).to(dtype),
        )
        for _ in range(3)
    ]
    counter = iter(range(10**9))

    def product() -> torch.Tensor:
        a, b = operands[next(counter) % len(operands)]
        return a @ b

    for _ in range(3):
        product()
    _, seconds = median_seconds(product, device, repeats)
    return 2.0 * size**3 / seconds


def count_flops(call: Callable[[], Any]) -> int:
    """FLOPs of `call` (matmuls and convolutions), attention through the math kernel so that it counts too.
    Run it on meta tensors: nothing is computed or allocated."""
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        call()
    return int(counter.get_total_flops())


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict that holds, on exit, the peak allocated GiB inside the block (CUDA; NaN elsewhere)."""
    result = {"peak_gib": float("nan")}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield result
    finally:
        if device.type == "cuda":
            synchronize(device)
            result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
