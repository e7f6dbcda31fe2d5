"""Evaluating a model on a whole split: the ELBO terms averaged over every point, under a fixed
random stream so that scores compare across epochs, runs and resumes."""

from __future__ import annotations

import contextlib
import math

import torch

from vaebench import elbo

EVAL_SEED = 1234


@contextlib.contextmanager
def fixed_randomness(device: torch.device, seed: int = EVAL_SEED):
    """Evaluate under a fixed seed without disturbing the training run's random stream."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def fixed_binarization(x: torch.Tensor) -> torch.Tensor:
    """One Bernoulli image per point, the same in every evaluation of the split (the final metrics
    and `vaebench eval` score the same images)."""
    return torch.bernoulli(x, generator=torch.Generator(x.device).manual_seed(EVAL_SEED))


def chunks(x: torch.Tensor, size: int):
    for start in range(0, len(x), size):
        yield x[start:start + size]


@torch.no_grad()
def split_terms(model, x: torch.Tensor, batch_size: int, binarize: bool = False) -> dict[str, torch.Tensor]:
    """Mean of every ELBO term over the split, plus `kl_per_dim` (a vector) and `elbo_bits_per_dim`.

    `binarize` draws one fixed Bernoulli image per point (the train split of dynamically binarised
    data); validation and test splits arrive binarised already."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    if binarize:
        x = fixed_binarization(x)
    with fixed_randomness(x.device):
        p_z = model.prior()
        for batch in chunks(x, batch_size):
            latents, layers = model.latents(batch, p_z)
            terms = elbo.elbo_terms(model.decode(latents).log_prob(batch), layers)
            q, p, z = next(iter(layers.values()))  # the top layer: what the prior acts on
            per_dim = elbo.kl_per_dim(q, p, z)
            if per_dim is not None:  # a prior without 1-D marginals has none
                terms["kl_per_dim"] = per_dim
            for name, value in terms.items():
                sums[name] = sums.get(name, 0) + value.sum(0)
    model.train()
    means = {name: total / len(x) for name, total in sums.items()}
    means["elbo_bits_per_dim"] = elbo.bits_per_dim(-means["elbo"], math.prod(x.shape[1:]))
    return means


def as_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalars only (vectors such as kl_per_dim go to histograms, not to metrics.json)."""
    return {k: float(v) for k, v in terms.items() if torch.as_tensor(v).numel() == 1}
