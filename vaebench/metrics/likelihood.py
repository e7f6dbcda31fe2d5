"""The importance-weighted estimate of log p(x) (Burda et al. 2015), with the ELBO and the posterior KL
from the same samples, so that log p(x) = elbo_iw + posterior_kl holds point by point."""

from __future__ import annotations

import math

import torch

from vaebench.datasets.arrays import EVAL_SEED
from vaebench.metrics.evaluation import (PER_POINT, chunks, fixed_randomness, mean_and_se, random_state,
                                         release_freed_memory, restore_random_state)


# (sample, point) pairs per call of the log-weights on a CPU: a call's arrays (~25 MB for MNIST) stay
# near the caches; 2x faster than 20,000 pairs on a 2-core CPU (scripts/bench_eval.py --pairs).
CPU_PAIRS_PER_CALL = 2000


def pairs_per_call(x: torch.Tensor, memory_fraction: float = 0.5) -> int:
    """How many (sample, point) pairs of the split `x` one call of the log-weights may evaluate: on
    CUDA as many as `memory_fraction` of the free memory holds, at 16 float32 numbers per data
    dimension a pair (logits, the repeated x, the log-likelihood, temporaries, hidden layers);
    elsewhere CPU_PAIRS_PER_CALL."""
    if x.device.type != "cuda":
        return CPU_PAIRS_PER_CALL
    free_bytes, _ = torch.cuda.mem_get_info(x.device)
    return max(CPU_PAIRS_PER_CALL, int(memory_fraction * free_bytes) // (16 * 4 * x[0].numel()))


def importance_weighted_log_likelihood(log_weights, x: torch.Tensor, samples: int,
                                       max_rows: int = CPU_PAIRS_PER_CALL) -> torch.Tensor:
    """log p(x) ~ log 1/S sum_s w_s, w_s = p(x, z_s) / q(z_s|x), z_s ~ q(z|x), per point: shape (N,)."""
    return importance_sampling_terms(log_weights, x, samples, max_rows)[0]


def importance_sampling_terms(log_weights, x: torch.Tensor, samples: int, max_rows: int = CPU_PAIRS_PER_CALL,
                              on_points=None, on_block=None) -> tuple[torch.Tensor, torch.Tensor]:
    """From the same S importance samples per point, w_s = p(x, z_s) / q(z_s|x), z_s ~ q(z|x): the
    estimate of log p(x), logsumexp_s log w_s - log S, and of the ELBO, mean_s log w_s; each of shape (N,).

    `log_weights(x_block, s)` returns log w of shape (s, len(x_block)). Points and samples are
    chunked so that one call sees at most `max_rows` (sample, point) pairs. `on_points(n)`, when
    given, hears `on_points(0)` as the first block begins, then of each block of n points done (a
    progress display); `on_block(log_px, elbo_iw)` receives each block's estimates as it is done."""
    points_per_chunk = max(1, max_rows // samples)
    samples_per_call = max(1, min(samples, max_rows // points_per_chunk))
    # calls of equal size (5,000 samples: 2 x 2,500, not 2,000 + 2,000 + 1,000, whose small last call runs slower)
    samples_per_call = math.ceil(samples / math.ceil(samples / samples_per_call))
    log_px, elbo_iw = [], []
    if on_points is not None:
        on_points(0)
    for block in chunks(x, points_per_chunk):
        log_w = torch.cat([log_weights(block, min(samples_per_call, samples - start))
                           for start in range(0, samples, samples_per_call)])
        log_px.append(torch.logsumexp(log_w, dim=0) - math.log(samples))
        elbo_iw.append(log_w.mean(dim=0))
        release_freed_memory()
        if on_block is not None:
            on_block(log_px[-1], elbo_iw[-1])
        if on_points is not None:
            on_points(len(block))
    if not log_px:
        return x.new_zeros(0), x.new_zeros(0)
    return torch.cat(log_px), torch.cat(elbo_iw)


# The importance samples' own random stream, apart from the surgery's: log p(x) does not depend on how
# many surgery draws came before it, and a stopped estimate goes on from its saved stream.
IMPORTANCE_SEED = EVAL_SEED + 1


@torch.no_grad()
def log_likelihood_report(model, x: torch.Tensor, batch_size: int, iw_samples: int, on_points=None,
                          done: dict | None = None, on_block=None, keep_points: bool = False) -> dict:
    """log p(x) from `iw_samples` importance samples per point, and the ELBO and posterior KL from the
    same samples, each with its standard error.

    A long estimate can stop and go on: `on_block(partial)` receives, after each block of points, the
    per-point estimates so far with the random stream's state; passed back as `done`, such a partial
    estimate goes on from the next point and ends with the numbers of an estimate that never stopped.
    `keep_points` adds `per_point`: the three at every point (on the CPU)."""
    model.eval()
    with fixed_randomness(x.device, IMPORTANCE_SEED):
        p_z = model.prior()
        log_px, elbo_iw = [], []  # per block, the resumed points' first
        if done is not None:
            restore_random_state(done["random_state"], x.device)
            log_px.append(done["log_px"].to(x.device))
            elbo_iw.append(done["elbo_iw"].to(x.device))

        def keep(block_log_px: torch.Tensor, block_elbo_iw: torch.Tensor) -> None:
            log_px.append(block_log_px)
            elbo_iw.append(block_elbo_iw)
            if on_block is not None:
                on_block({"log_px": torch.cat(log_px), "elbo_iw": torch.cat(elbo_iw), "random_state": random_state(x.device)})

        start = len(done["log_px"]) if done is not None else 0
        importance_sampling_terms(lambda block, s: model.log_importance_weights(block, p_z, s), x[start:], iw_samples,
                                  max_rows=max(batch_size, pairs_per_call(x)), on_points=on_points, on_block=keep)
        log_px, elbo_iw = torch.cat(log_px), torch.cat(elbo_iw)
    model.train()
    report = {**mean_and_se("log_likelihood", log_px), **mean_and_se("elbo_iw", elbo_iw),
              **mean_and_se("posterior_kl", log_px - elbo_iw)}
    if keep_points:
        report[PER_POINT] = {"log_likelihood": log_px.float().cpu(), "elbo_iw": elbo_iw.float().cpu(),
                             "posterior_kl": (log_px - elbo_iw).float().cpu()}
    return report
