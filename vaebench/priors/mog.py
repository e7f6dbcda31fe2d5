"""A mixture of K learned diagonal Gaussians with softmax weights."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaebench.config.checks import Count
from vaebench.distributions import DiagonalGaussianMixture
from vaebench.distributions.mixture import expansion_dtype_at


class MixturePrior(nn.Module):
    def __init__(self, latent_dim: int, K: Count = 500):
        super().__init__()
        self.K = K
        # Spread the means so the components start distinct; unit scales as in N(0, I).
        self.loc = nn.Parameter(torch.randn(K, latent_dim))
        self.raw_scale = nn.Parameter(torch.full((K, latent_dim), _inverse_softplus(1.0)))
        self.logits = nn.Parameter(torch.zeros(K))

    def forward(self) -> DiagonalGaussianMixture:
        scale = F.softplus(self.raw_scale) + 1e-4
        return DiagonalGaussianMixture(self.logits, self.loc, scale, expansion_dtype_at(self.loc, scale))


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))
