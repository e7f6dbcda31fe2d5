"""The β-weighted ELBO (Kingma & Welling 2013; β: Higgins et al. 2017), vaebench's default:
loss = −E_q[log p(x|z)] + β·KL(q(z|x) ‖ p(z)), per point, with β_t of the KL warm-up."""

from __future__ import annotations

from vaebench.metrics import elbo
from vaebench.objectives.base import Objective


class ELBO(Objective):
    beta_weighs = "the KL"

    def __call__(self, model, x, beta, step):
        # Exactly the step vaebench has always taken: the same kernels in the same order.
        terms = model.terms(x)
        return elbo.beta_loss(terms, beta), terms, {}

    def split_loss(self, terms, beta, step):
        return elbo.beta_loss(terms, beta)
