"""What the benchmark scripts share: the device, a clock that waits for it, the matrix-product rate
that every achieved GFLOP/s is compared with, and peak memory. Not a test module: pytest collects
tests/ only."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time

import torch


def pick_device(name: str, fast_cpu_math: bool = True) -> torch.device:
    """The device; on a CPU also torch's fast math kernels for the whole process (vaebench.run.cpu_math),
    so that every contender in a script runs with the same kernels."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cpu" and fast_cpu_math:
        from vaebench.run.cpu_math import use_fast_cpu_math

        use_fast_cpu_math()
    return device


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__})"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds that fn() takes, the device's queued work included."""
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - started


def matmul_gflops(device: torch.device, n: int = 2048, seconds: float = 1.0, shape=None,
                  dtype: torch.dtype = torch.float32) -> float:
    """The device's matrix-product rate (float32 unless `dtype`): the best of repeated (m, k) @ (k, n)
    products, square n x n unless `shape` = (m, k, n) is given."""
    m, k, n = shape or (n, n, n)
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    out = torch.empty(m, n, device=device, dtype=dtype)
    flops = 2 * m * k * n
    torch.mm(a, b, out=out)
    repeats = 1
    while timed(lambda: [torch.mm(a, b, out=out) for _ in range(repeats)], device) < 0.05:
        repeats *= 2
    best, spent = 0.0, 0.0
    while spent < seconds:
        t = timed(lambda: [torch.mm(a, b, out=out) for _ in range(repeats)], device)
        spent += t
        best = max(best, repeats * flops / t / 1e9)
    return best


@contextlib.contextmanager
def quiet_stderr():
    """Silence what C++ libraries write to file descriptor 2 (the profiler's start/stop lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_memory_bytes(fn, device: torch.device) -> int:
    """The most memory that fn() holds at once beyond what was allocated before it: activations,
    gradients, temporaries and any state it creates. CUDA: the caching allocator's peak; CPU: the
    profiler's allocation records, summed in time order."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
    live = peak = 0
    for record in records:
        live += record.nbytes()
        peak = max(peak, live)
    return peak


def median(values) -> float:
    return statistics.median(values)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded so that it also reads in a terminal."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|", *map(line, rows)])
