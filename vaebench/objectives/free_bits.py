"""Free bits (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
flow", arXiv:1606.04934, appendix C.8): the latent dimensions are split into groups, and each
group's KL, averaged over the minibatch, counts only above λ nats:

    loss = −E_q[log p(x|z)] + β · Σ_groups max(λ, E_batch[KL(q(z_g|x) ‖ p(z_g))]) + β · E_batch[rest],

with rest = KL − Σ_j KL(q(z_j|x) ‖ p(z_j)): zero for a factorised prior; for a prior that is not
(a mixture), the per-dimension KLs are against its 1-D marginals and do not add up to the KL, and
the difference counts in full, as do the lower layers of a two-level model. So λ = 0 gives the
β-ELBO (while every group's batch KL is >= 0, always so for analytic Gaussian KLs). The paper
has no β; here β weighs the whole (free-bits) KL as in the β-ELBO, 1 by default.
"""

from __future__ import annotations

import torch

from vaebench.metrics import elbo
from vaebench.config.checks import Count, NonNegative
from vaebench.errors import UserError
from vaebench.objectives.base import Objective, elbo_pass, top_layer


def group_kl(kl_per_dim: torch.Tensor, group_size: int) -> torch.Tensor:
    """The KL of each group of `group_size` consecutive dimensions, averaged over the batch: shape
    (D / group_size,). `kl_per_dim` is (batch, D) per point, or (D,) already averaged."""
    batch_kl = kl_per_dim.mean(0) if kl_per_dim.dim() == 2 else kl_per_dim
    return batch_kl.view(-1, group_size).sum(-1)


def free_bits_kl(kl_of_groups: torch.Tensor, lambda_nats: float) -> torch.Tensor:
    """Σ_g max(λ, KL_g): a group below λ nats costs λ and gets no gradient pushing its KL down."""
    return kl_of_groups.clamp(min=lambda_nats).sum()


class FreeBits(Objective):
    beta_weighs = "the KL, each group's counted only above λ"
    prior_needs = "marginals"

    def __init__(self, latent_dim: int, lambda_nats: NonNegative = 0.1, group_size: Count = 1):
        if latent_dim % group_size:
            raise UserError(f"objective.group_size={group_size} does not divide the model's {latent_dim} latent "
                            "dimensions: free bits splits them into equal groups of consecutive dimensions. Use a "
                            f"divisor of {latent_dim} (1 = each dimension on its own).")
        self.lambda_nats, self.group_size = float(lambda_nats), int(group_size)

    def __call__(self, model, x, beta, step):
        terms, layers = elbo_pass(model, x)
        _, (q, p, z) = top_layer(layers)
        kl_dims = elbo.kl_per_dim(q, p, z)  # (batch, D); never None: the prior was checked
        kl_of_groups = group_kl(kl_dims, self.group_size)
        free_kl = free_bits_kl(kl_of_groups, self.lambda_nats)
        rest = terms["kl"] - kl_dims.sum(-1)  # other layers, and a non-factorised prior's remainder
        loss = -terms["reconstruction"].mean() + beta * (free_kl + rest.mean())
        with torch.no_grad():
            below = (kl_of_groups < self.lambda_nats).sum().float()
        return loss, terms, {"free_bits_kl": free_kl.detach(), "groups_below_lambda": below}

    def split_loss(self, terms, beta, step):
        if "kl_per_dim" not in terms:
            return None
        kl_dims = terms["kl_per_dim"]
        free_kl = free_bits_kl(group_kl(kl_dims, self.group_size), self.lambda_nats)
        return -terms["reconstruction"] + beta * (free_kl + terms["kl"] - kl_dims.sum())

