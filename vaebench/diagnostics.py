"""Diagnostics of a trained model over a whole split, per data point, in nats.

ELBO surgery (Hoffman & Johnson 2016): with the aggregate posterior q(z) = 1/N sum_n q(z|x_n),

    avg_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q(z) || p(z)),      0 <= I_q(n; z) <= log N,

and for a factorised prior (Chen et al. 2018) KL(q(z) || p(z)) = TC + sum_j KL(q(z_j) || p(z_j)).
q(z) here is the exact mixture over all N points of the split, evaluated in chunks of rows as matrix
products, never a minibatch approximation. The estimates use R independent samples z_n ~ q(z|x_n) per
point (`surgery_samples`) and come with their Monte-Carlo standard error (`<term>_se`, README).

Only `encode(x) -> q(z|x)`, `prior() -> p(z)` and `log_importance_weights(x, p_z)` of a model are
used. For the two-level model the surgery terms concern the top layer z2 (its q(z2|x) and p(z2)),
and `log_likelihood` the joint (z1, z2).
"""

from __future__ import annotations

import math

import torch

from vaebench import elbo
from vaebench.data import EVAL_SEED
from vaebench.distributions import DiagonalNormal
from vaebench.evaluate import (as_floats, chunks, fixed_randomness, mean_and_se, random_state,
                               restore_random_state, split_terms)
from vaebench.priors import DiagonalGaussianMixture, float32_rounding_nats

# Elements of one chunk's pairwise matrix: bounds memory at O(chunk * N) whatever N is.
PAIRWISE_BUDGET = 1 << 24
# On a CPU a chunk of 16 MB stays in the caches between its matrix product and its logsumexp
# (up to 1.8x faster than 64 MB chunks on a 2-core CPU; scripts/bench_diagnostics.py).
CPU_PAIRWISE_BUDGET = 1 << 22


def _pairwise_budget(device: torch.device) -> int:
    return min(PAIRWISE_BUDGET, CPU_PAIRWISE_BUDGET) if device.type == "cpu" else PAIRWISE_BUDGET


def _logsumexp_(x: torch.Tensor) -> torch.Tensor:
    """torch.logsumexp(x, -1) for finite x, computed in x's own memory (which it overwrites): a
    chunk of pairwise log-densities is never copied.

    Terms below exp(-80) ~ 2e-35 of the largest count as that: a sum that is at least 1 cannot tell,
    while exp() of far smaller numbers takes a slow path on CPUs (ten times slower here)."""
    if x.requires_grad:
        return torch.logsumexp(x, dim=-1)
    top = x.amax(dim=-1, keepdim=True)
    return x.sub_(top).clamp_(min=-80.0).exp_().sum(dim=-1).log_().add_(top.squeeze(-1))


# The largest float32 rounding estimate (priors.float32_rounding_nats) at which the aggregate's expansion
# stays in float32; above it the expansion runs in float64 (1.4x slower for the joint, 1.9x for the
# marginals on a CPU). Calibrated so that the measured error stays under 1e-3 nats per point.
FLOAT32_JOINT_NATS = 1e-3
FLOAT32_MARGINAL_NATS = 2e-2


def expansion_dtypes(loc: torch.Tensor, scale: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """The dtypes of the aggregate's expansion for (the joint, the 1-D marginals): float32 where its
    rounding allows, float64 where posteriors are sharp (scale << |loc|)."""
    joint, marginals = float32_rounding_nats(loc, scale)
    return (torch.float32 if joint <= FLOAT32_JOINT_NATS else torch.float64,
            torch.float32 if marginals <= FLOAT32_MARGINAL_NATS else torch.float64)


def aggregate_log_density(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log q(z) for each row of z (M, D), with q = 1/N sum_n N(loc_n, diag scale_n^2): shape (M,); z are
    samples of the posteriors themselves (what the expansion's dtype is chosen for).

    Each chunk of rows of the (M, N) pairwise log-densities is one matrix product (the mixture's)."""
    mixture = DiagonalGaussianMixture(torch.zeros(len(loc), device=loc.device), loc, scale, expansion_dtypes(loc, scale)[0])
    rows = max(1, _pairwise_budget(z.device) // len(loc))
    buffer = torch.empty(rows * len(loc), device=z.device)  # one for every block: no heap churn
    return torch.cat([_logsumexp_(mixture.component_log_prob(block, out=buffer)) for block in chunks(z, rows)])


def aggregate_marginal_log_density(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log q(z_j) of each coordinate under the aggregate's 1-D marginals: shape (M, D).

    Per dimension the log-densities of all pairs are one batched matrix product (the mixture's)."""
    n, d = loc.shape
    mixture = DiagonalGaussianMixture(torch.zeros(n, device=loc.device), loc, scale, expansion_dtypes(loc, scale)[1])
    rows = max(1, _pairwise_budget(z.device) // (n * d))
    buffer = torch.empty(rows * n * d, device=z.device)
    return torch.cat([_logsumexp_(mixture.component_marginal_log_prob(block, out=buffer)).T for block in chunks(z, rows)])


# Points whose samples estimate TC and the dimension-wise KL. Their aggregate marginals still mix
# all N posteriors (exact), but cost D times the joint density, so the outer average over samples
# uses a random subset on large splits: an unbiased estimate of the same full-split quantity.
TC_POINTS = 2000


def elbo_surgery(
    loc: torch.Tensor,
    scale: torch.Tensor,
    z: torch.Tensor,
    log_p_z: torch.Tensor,
    prior_marginals=None,
    tc_points: int = TC_POINTS,
) -> dict[str, float]:
    """The surgery terms, each with its Monte-Carlo standard error (`<term>_se`), from the posteriors
    q(z|x_n) = N(loc_n, scale_n^2) of a whole split, samples z from them, shape (R, N, D) (R draws per
    point) or (N, D) (one), and the prior's log-density at those samples. `prior_marginals(z) -> log p(z_j)`,
    (M, D) -> (M, D), for a prior with 1-D marginals, splits the marginal KL into TC + dimension-wise KL;
    it is evaluated at the samples of the TC subset only (a mixture prior of many components, K = N,
    costs D times its joint density there). With N <= tc_points, total_correlation + dimwise_kl =
    marginal_kl exactly."""
    if z.dim() == 2:
        z, log_p_z = z.unsqueeze(0), log_p_z.unsqueeze(0)
    draws, n, d = z.shape
    log_q_z_given_x = DiagonalNormal(loc, scale).log_prob(z)  # (R, N)
    log_q_z = aggregate_log_density(z.reshape(-1, d), loc, scale).view(draws, n)
    subset = torch.randperm(n, device=z.device)[:tc_points] if n > tc_points else torch.arange(n, device=z.device)
    log_q_z_dims = aggregate_marginal_log_density(z[:, subset].reshape(-1, d), loc, scale).view(draws, len(subset), d)
    terms = {
        **replicate_mean_and_se("mutual_info", log_q_z_given_x - log_q_z, n),
        **replicate_mean_and_se("marginal_kl", log_q_z - log_p_z, n),
        "mutual_info_max": math.log(n),
        **replicate_mean_and_se("total_correlation", log_q_z[:, subset] - log_q_z_dims.sum(-1), n),
    }
    if prior_marginals is not None:
        log_p_z_dims = prior_marginals(z[:, subset].reshape(-1, d)).view(draws, len(subset), d)
        terms.update(replicate_mean_and_se("dimwise_kl", (log_q_z_dims - log_p_z_dims).sum(-1), n))
    return terms


def replicate_mean_and_se(name: str, per_draw: torch.Tensor, population: int) -> dict[str, float]:
    """A split-level term from its per-point contributions at R independent draws per point, shape (R, S),
    S of the split's `population` points: {name: the mean, name_se: its Monte-Carlo standard error}.

    The estimand is one number for the split, so its error is the draws' (and, with S < population,
    the choice of points'), not the points' spread. Each contribution depends on its own point's draw
    only (the aggregate q(z) is a fixed function), so the contributions are independent and the
    variance of the mean is sum_n Var_n / (R S^2), Var_n each point's variance over its R draws: the
    spread of R replicate estimates, with far less noise than their sample variance. With R = 1 the
    points' spread, Var over n / S, stands in: an upper bound (it adds the spread of their means)."""
    draws, points = per_draw.shape
    per_draw = per_draw.double()
    if draws > 1:
        variance = per_draw.var(dim=0).sum() / (draws * points**2)
    else:
        variance = per_draw.var() / points if points > 1 else per_draw.new_zeros(())
    if points < population:  # a random subset of the points: finite-population sampling error
        variance = variance + (1 - points / population) * per_draw.mean(0).var() / points
    return {name: float(per_draw.mean()), f"{name}_se": float(variance.sqrt())}


def active_units(loc: torch.Tensor, threshold: float = 0.01) -> int:
    """#{u : Cov_x(E_q[z_u | x]) > threshold} (Burda et al. 2015)."""
    return int((loc.var(dim=0) > threshold).sum())


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
    log_px, elbo_iw = [], []
    if on_points is not None:
        on_points(0)
    for block in chunks(x, points_per_chunk):
        log_w = torch.cat([log_weights(block, min(samples_per_call, samples - start))
                           for start in range(0, samples, samples_per_call)])
        log_px.append(torch.logsumexp(log_w, dim=0) - math.log(samples))
        elbo_iw.append(log_w.mean(dim=0))
        if on_block is not None:
            on_block(log_px[-1], elbo_iw[-1])
        if on_points is not None:
            on_points(len(block))
    if not log_px:
        return x.new_zeros(0), x.new_zeros(0)
    return torch.cat(log_px), torch.cat(elbo_iw)


def prior_log_density(p_z, z: torch.Tensor, rows: int) -> torch.Tensor:
    """log p(z) at samples z (..., D), in chunks of `rows` samples."""
    flat = z.reshape(-1, z.shape[-1])
    return torch.cat([p_z.log_prob(block) for block in chunks(flat, rows)]).view(z.shape[:-1])


def prior_marginals_of(p_z, rows: int):
    """z (M, D) -> log p(z_j) of shape (M, D), float32, in chunks of `rows` samples; None where the prior
    has no 1-D marginals."""
    if not elbo.has_marginals(p_z):
        return None
    return lambda z: torch.cat([elbo.prior_marginal_log_prob(p_z, block) for block in chunks(z, rows)]).float()


@torch.no_grad()
def split_diagnostics(model, x: torch.Tensor, batch_size: int, iw_samples: int = 0,
                      surgery_samples: int = 1, on_points=None) -> dict[str, float]:
    """Surgery (with `surgery_samples` draws per point), TC, dimension-wise KL (priors with 1-D
    marginals), active units and, when `iw_samples` > 0, the importance-weighted log-likelihood with
    the ELBO and posterior KL from the same samples (`log_likelihood_report`), for the split `x`
    (already binarised); every estimate with its standard error. `on_points(n)` hears of the
    log-likelihood's progress."""
    model.eval()
    with fixed_randomness(x.device):
        p_z = model.prior()
        posteriors = [model.encode(block) for block in chunks(x, batch_size)]
        loc = torch.cat([q.loc for q in posteriors]).float()
        scale = torch.cat([q.scale for q in posteriors]).float()
        z = loc + scale * torch.randn(surgery_samples, *loc.shape, device=loc.device)
        rows = max(batch_size, 1)
        result = elbo_surgery(loc, scale, z, prior_log_density(p_z, z, rows).float(),
                              prior_marginals=prior_marginals_of(p_z, rows))
        result["active_units"] = active_units(loc)
    model.train()
    if iw_samples > 0:
        result.update(log_likelihood_report(model, x, batch_size, iw_samples, on_points=on_points))
    return result


# The importance samples' own random stream, apart from the surgery's: log p(x) does not depend on how
# many surgery draws came before it, and a stopped estimate goes on from its saved stream.
IMPORTANCE_SEED = EVAL_SEED + 1


@torch.no_grad()
def log_likelihood_report(model, x: torch.Tensor, batch_size: int, iw_samples: int, on_points=None,
                          done: dict | None = None, on_block=None) -> dict[str, float]:
    """log p(x) from `iw_samples` importance samples per point, and the ELBO and posterior KL from the
    same samples, each with its standard error.

    A long estimate can stop and go on: `on_block(partial)` receives, after each block of points, the
    per-point estimates so far with the random stream's state; passed back as `done`, such a partial
    estimate goes on from the next point and ends with the numbers of an estimate that never stopped."""
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
    return {**mean_and_se("log_likelihood", log_px), **mean_and_se("elbo_iw", elbo_iw),
            **mean_and_se("posterior_kl", log_px - elbo_iw)}


def split_report(model, x: torch.Tensor, batch_size: int, iw_samples: int, surgery_samples: int = 1,
                 on_points=None) -> dict[str, float]:
    """Every ELBO term and every diagnostic of one split (already binarised), each estimate with its
    standard error. `elbo` is the analytic-KL one of the ELBO terms; when `iw_samples` > 0,
    `log_likelihood`, `elbo_iw` and `posterior_kl = log_likelihood - elbo_iw` come from the same
    importance samples, point by point."""
    terms = as_floats(split_terms(model, x, batch_size))
    terms.update(split_diagnostics(model, x, batch_size, iw_samples, surgery_samples, on_points))
    return terms
