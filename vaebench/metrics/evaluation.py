"""Evaluating a model on a whole split: the ELBO terms averaged over every point, under a fixed
random stream so that scores compare across epochs, runs and resumes."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import time

import torch

from vaebench.datasets.arrays import EVAL_SEED, fixed_binarization
from vaebench.metrics import elbo


@contextlib.contextmanager
def fixed_randomness(device: torch.device, seed: int = EVAL_SEED):
    """Evaluate under a fixed seed without disturbing the training run's random stream."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def random_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The state of torch's random streams that an evaluation on `device` draws from."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_random_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()
RELEASE_EVERY_S = 5.0  # a trim takes about 30 ms: at most 0.6% of an evaluation
_released_at = 0.0


def release_freed_memory() -> None:
    """Hands the C heap's free pages back to the system, at most once every RELEASE_EVERY_S seconds.

    A long evaluation on a CPU allocates and frees blocks of megabytes thousands of times, and glibc
    keeps the free pages they leave between longer-lived small allocations: full MNIST's test log p(x)
    at S = 5,000 grew by 0.5-2.3 MB a point until the kernel killed the run at 24 GB, 6,790 points in.
    Trimmed, the process stays at its size."""
    global _released_at
    if _MALLOC_TRIM is not None and time.monotonic() - _released_at >= RELEASE_EVERY_S:
        _MALLOC_TRIM(0)
        _released_at = time.monotonic()


def counting(progress, stage: str, total: int):
    """A stage of a long evaluation, for `progress(stage, done, total)` (a progress display): tells it
    `done = 0` now and returns `on_units(n)`, which tells it as n more of the `total` units are done;
    None (nobody to tell) without `progress`."""
    if progress is None:
        return None
    done = 0
    progress(stage, 0, total)

    def on_units(units: int) -> None:
        nonlocal done
        done += units
        progress(stage, done, total)

    return on_units


def chunks(x: torch.Tensor, size: int):
    for start in range(0, len(x), size):
        yield x[start:start + size]


# Points whose per-dimension KL is averaged when the prior is a mixture: its 1-D marginals cost K
# components per coordinate, D times the ELBO's own log p(z), and at K = N (the aggregate posterior of
# 50,000 points) they dominated a whole evaluation. The first points of the split estimate the same mean.
MIXTURE_KL_PER_DIM_POINTS = 2000


@torch.no_grad()
def split_terms(model, x: torch.Tensor, batch_size: int, binarize: bool = False,
                progress=None, keep_points: bool = False) -> dict[str, torch.Tensor]:
    """Mean of every ELBO term over the split with its standard error (`<term>_se`), plus `kl_per_dim`
    (a vector; absent when the prior has no 1-D marginals; for a mixture prior, over the first
    MIXTURE_KL_PER_DIM_POINTS points, in whole batches) and `elbo_bits_per_dim`.

    `binarize` draws one fixed Bernoulli image per point (the train split of dynamically binarised
    data); validation and test splits arrive binarised already. `progress(stage, done, total)` hears of
    the points done (`counting`). `keep_points` adds `per_point`: each term's value at every point (on
    the CPU), for comparisons of runs scored on the same points."""
    model.eval()
    per_point: dict[str, list[torch.Tensor]] = {}
    if binarize:
        x = fixed_binarization(x)
    on_points = counting(progress, "ELBO terms", len(x))
    with fixed_randomness(x.device):
        p_z = model.prior()
        per_dim_points = MIXTURE_KL_PER_DIM_POINTS if hasattr(p_z, "marginal_log_prob") else len(x)
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            latents, layers = model.latents(batch, p_z)
            terms = elbo.elbo_terms(model.decode(latents).log_prob(batch), layers)
            q, p, z = next(iter(layers.values()))  # the top layer: what the prior acts on
            kl_per_dim = elbo.kl_per_dim(q, p, z) if start < per_dim_points else None
            if kl_per_dim is not None:
                terms["kl_per_dim"] = kl_per_dim
            for name, value in terms.items():
                per_point.setdefault(name, []).append(value.float())
            if on_points is not None:
                on_points(len(batch))
    model.train()
    result: dict[str, torch.Tensor] = {}
    kept = {}
    for name, values in per_point.items():
        values = torch.cat(values)
        result[name] = values.mean(0)
        if values.dim() == 1:
            result[f"{name}_se"] = standard_error(values)
            kept[name] = values.cpu()
    if keep_points:
        result[PER_POINT] = kept
    result["elbo_bits_per_dim"] = elbo.bits_per_dim(-result["elbo"], math.prod(x.shape[1:]), data_levels(model))
    return result


PER_POINT = "per_point"


def standard_error(per_point: torch.Tensor) -> torch.Tensor:
    """The standard error of the mean of independent per-point values: their standard deviation / sqrt(N)
    (0 for a single point, whose spread is unknown)."""
    if len(per_point) < 2:
        return per_point.new_zeros(())
    return per_point.std() / math.sqrt(len(per_point))


def mean_and_se(name: str, per_point: torch.Tensor) -> dict[str, float]:
    """{name: mean over points, name_se: its standard error} of per-point values."""
    return {name: float(per_point.mean()), f"{name}_se": float(standard_error(per_point))}


def data_levels(model) -> int | None:
    """How many levels the data's dimensions take for bits/dim: 256 (8-bit data in [0, 1]) where the
    likelihood is a density (Gaussian), None where it is a probability already (Bernoulli)."""
    return elbo.DATA_LEVELS if getattr(model.likelihood, "kind", None) == "gaussian" else None


def as_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalars only (vectors such as kl_per_dim go to histograms, not to metrics.json)."""
    return {k: float(v) for k, v in terms.items() if k != PER_POINT and torch.as_tensor(v).numel() == 1}
