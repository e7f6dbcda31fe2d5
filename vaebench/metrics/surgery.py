"""ELBO surgery (Hoffman & Johnson 2016): with the aggregate posterior q(z) = 1/N sum_n q(z|x_n),

    avg_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q(z) || p(z)),      0 <= I_q(n; z) <= log N,

and for a factorised prior (Chen et al. 2018) KL(q(z) || p(z)) = TC + sum_j KL(q(z_j) || p(z_j)).
q(z) here is the exact mixture over all N points of the split, evaluated in chunks of rows as matrix
products, never a minibatch approximation. The estimates use R independent samples z_n ~ q(z|x_n) per
point (`surgery_samples`) and come with their Monte-Carlo standard error (`<term>_se`, README).
The functions here take the posteriors' locations and scales, samples and prior log-densities:
no model.
"""

from __future__ import annotations

import math

import torch

from vaebench.distributions import DiagonalGaussianMixture, DiagonalNormal, float32_rounding_nats
from vaebench.metrics.evaluation import chunks


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
