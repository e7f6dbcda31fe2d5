"""torch's CPU math kernels before and after `vaebench.run.cpu_math.use_fast_cpu_math()`, in one fresh process.

    python scripts/bench_cpu_math.py

Prints µs per call on a 100 x 784 float32 tensor (one MNIST batch of logits) for the kernels behind
the Bernoulli log-density and the Gaussian heads' softplus, first as the process starts, then after
the switch. On a machine without the effect both columns agree.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from benchutil import table


def micros(fn, calls: int = 30, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    logits = 3 * torch.randn(100, 784)
    x = torch.rand(100, 784).bernoulli()
    kernels = {
        "log1p": lambda: torch.log1p(logits.abs()),
        "softplus": lambda: F.softplus(logits),
        "logsigmoid": lambda: F.logsigmoid(logits),
        "binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(logits, x, reduction="none"),
        "exp (unaffected)": lambda: torch.exp(logits),
    }
    before = {name: micros(fn) for name, fn in kernels.items()}  # must run before anything calls pow

    from vaebench.run.cpu_math import use_fast_cpu_math

    use_fast_cpu_math()
    after = {name: micros(fn) for name, fn in kernels.items()}
    print(f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__}); µs per call on 100 x 784 float32\n")
    print(table(["kernel", "fresh process", "after use_fast_cpu_math()", "speed-up"],
                [[name, f"{before[name]:.1f}", f"{after[name]:.1f}", f"{before[name] / after[name]:.1f}x"] for name in kernels]))


if __name__ == "__main__":
    main()
