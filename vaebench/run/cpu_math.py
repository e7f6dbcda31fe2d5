"""A process-wide switch for torch's CPU math, measured, not explained.

On the development machine (AMD EPYC Zen 5, AVX-512; torch 2.14.1), torch's vectorised `log1p`,
and with it `softplus`, `logsigmoid` and `binary_cross_entropy_with_logits` (the Bernoulli
log-density), runs about 19x slower in a fresh process (380 µs per 100 x 784 values, against
20 µs) until a vectorised `pow` with a general exponent has run once in that process; after it,
the fast kernels stay for the life of the process. A VampPrior's backward pass happens to call one
(`scale.pow(-2)` differentiates to `pow(-3)`), so those runs were fast and standard-prior runs
slow. One `pow` on 32 values at start-up makes every run fast. It changes no number: only
which kernel torch calls. `scripts/bench_cpu_math.py` shows the effect on any machine.
"""

from __future__ import annotations

import torch

_done = False


def use_fast_cpu_math() -> None:
    """Runs one small vectorised pow, once per process."""
    global _done
    if not _done:
        torch.ones(32).pow_(-2.5)
        _done = True
