"""Every diagnostic of a trained model over a whole split, per data point, in nats: the ELBO terms, the
ELBO surgery (surgery.py), active units and the importance-weighted log p(x) (likelihood.py), each
estimate with its standard error.

Only `encode(x) -> q(z|x)`, `prior() -> p(z)`, `latents` / `decode` and `log_importance_weights(x, p_z)`
of a model are used. For the two-level model the surgery terms concern the top layer z2 (its q(z2|x)
and p(z2)), and `log_likelihood` the joint (z1, z2).
"""

from __future__ import annotations

import torch

from vaebench.distributions import DiagonalGaussianMixture
from vaebench.metrics import elbo
from vaebench.metrics.evaluation import PER_POINT, as_floats, chunks, counting, fixed_randomness, split_terms
from vaebench.metrics.likelihood import log_likelihood_report
from vaebench.metrics.surgery import active_units, elbo_surgery


def prior_log_density(p_z, z: torch.Tensor, rows: int, on_rows=None) -> torch.Tensor:
    """log p(z) at samples z (..., D), in chunks of `rows` samples; `on_rows(n)` hears of each chunk done."""
    flat = z.reshape(-1, z.shape[-1])
    return torch.cat([_told(p_z.log_prob(block), on_rows) for block in chunks(flat, rows)]).view(z.shape[:-1])


def prior_marginals_of(p_z, rows: int, progress=None):
    """z (M, D) -> log p(z_j) of shape (M, D), float32, in chunks of `rows` samples; None where the prior
    has no 1-D marginals."""
    if not elbo.has_marginals(p_z):
        return None

    def marginals(z: torch.Tensor) -> torch.Tensor:
        on_rows = counting(progress, "dimension-wise KL: p(z_j) in each dimension", len(z))
        return torch.cat([_told(elbo.prior_marginal_log_prob(p_z, block), on_rows) for block in chunks(z, rows)]).float()

    return marginals


def _told(block_result: torch.Tensor, on_rows) -> torch.Tensor:
    if on_rows is not None:
        on_rows(len(block_result))
    return block_result


@torch.no_grad()
def split_diagnostics(model, x: torch.Tensor, batch_size: int, iw_samples: int = 0, surgery_samples: int = 1,
                      on_points=None, surgery_points: int | None = None, progress=None, keep_points: bool = False) -> dict:
    """Surgery (with `surgery_samples` draws per point; on a split of more than `surgery_points` points,
    of a random subset of that many, each against the exact aggregate of all), TC, dimension-wise KL
    (priors with 1-D marginals), active units and, when `iw_samples` > 0, the importance-weighted
    log-likelihood with the ELBO and posterior KL from the same samples (`log_likelihood_report`), for
    the split `x` (already binarised); every estimate with its standard error. `on_points(n)` hears of
    the log-likelihood's progress, `progress(stage, done, total)` of the other long stages'; `keep_points`
    adds the log-likelihood's `per_point` values."""
    model.eval()
    with fixed_randomness(x.device):
        p_z = model.prior()
        posteriors = [model.encode(block) for block in chunks(x, batch_size)]
        loc = torch.cat([q.loc for q in posteriors]).float()
        scale = torch.cat([q.scale for q in posteriors]).float()
        points = None
        if surgery_points and len(loc) > surgery_points:
            points = torch.randperm(len(loc), device=loc.device)[:surgery_points]
        own_loc, own_scale = (loc, scale) if points is None else (loc[points], scale[points])
        z = own_loc + own_scale * torch.randn(surgery_samples, *own_loc.shape, device=loc.device)
        rows = max(batch_size, 1)
        log_p_z = prior_log_density(p_z, z, rows, counting(progress, "surgery: log p(z)", z[..., 0].numel()))
        result = elbo_surgery(loc, scale, z, log_p_z.float(), prior_marginals=prior_marginals_of(p_z, rows, progress),
                              points=points, progress=progress,
                              prior_components=len(p_z.loc) if isinstance(p_z, DiagonalGaussianMixture) else 0)
        result["active_units"] = active_units(loc)
    model.train()
    if iw_samples > 0:
        result.update(log_likelihood_report(model, x, batch_size, iw_samples, on_points=on_points, keep_points=keep_points))
    return result


def split_report(model, x: torch.Tensor, batch_size: int, iw_samples: int, surgery_samples: int = 1,
                 on_points=None, surgery_points: int | None = None, progress=None, keep_points: bool = False) -> dict:
    """Every ELBO term and every diagnostic of one split (already binarised), each estimate with its
    standard error. `elbo` is the analytic-KL one of the ELBO terms; when `iw_samples` > 0,
    `log_likelihood`, `elbo_iw` and `posterior_kl = log_likelihood - elbo_iw` come from the same
    importance samples, point by point. `progress(stage, done, total)` hears of every long stage but
    the log-likelihood's (`on_points`). `keep_points` adds `per_point`: every ELBO term's value at each
    point (`split_terms`)."""
    everything = split_terms(model, x, batch_size, progress=progress, keep_points=keep_points)
    terms = as_floats(everything)
    diagnostics = split_diagnostics(model, x, batch_size, iw_samples, surgery_samples, on_points, surgery_points,
                                    progress, keep_points)
    terms.update(diagnostics)
    if keep_points:
        terms[PER_POINT] = {**everything[PER_POINT], **diagnostics.get(PER_POINT, {})}
    return terms
