"""The importance-weighted bound (Burda et al. 2015, "Importance weighted autoencoders",
arXiv:1509.00519) as the training objective:

    L_k = E[log 1/k Σ_s p(x, z_s) / q(z_s|x)],  z_1..z_k ~ q(z|x),

which rises with k towards log p(x) (L_1 is the ELBO). The loss is −L_k per point. The ELBO terms
are logged from their own sample, exactly as in every other run, outside the graph. The paper has
no β, so β and its warm-up do not enter.
"""

from __future__ import annotations

import math

import torch

from vaebench.config.checks import Count
from vaebench.objectives.base import Objective


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """log 1/k Σ_s w_s per point, from log w of shape (k, batch)."""
    return torch.logsumexp(log_weights, dim=0) - math.log(len(log_weights))


class IWAE(Objective):
    beta_weighs = None

    def __init__(self, k: Count = 5):
        self.k = int(k)

    def __call__(self, model, x, beta, step):
        p_z = model.prior()
        bound = iwae_bound(model.log_importance_weights(x, p_z, self.k))
        with torch.no_grad():  # logged, not optimised
            terms = model.terms(x, p_z)
        return -bound, terms, {"iwae_bound": bound.detach()}
