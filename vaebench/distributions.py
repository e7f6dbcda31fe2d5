"""torch.distributions classes whose hot methods are leaner than the library's generic ones.

Each is a subclass of the library's own (`Independent`), so `kl_divergence`, `.base_dist`, `.mean`
and sampling work as usual; each agrees with its library counterpart to float precision
(tests/test_distributions.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal, register_kl

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class DiagonalNormal(Independent):
    """N(loc, diag(scale^2)) over the last axis: Independent(Normal(loc, scale), 1) with
    log_prob, entropy, rsample and KL written for the diagonal case directly, a handful of
    kernels each, without the generic per-coordinate path."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(Normal(loc, scale, validate_args=False), 1, validate_args=False)
        self.loc, self.scale = self.base_dist.loc, self.base_dist.scale

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        return self.loc + self.scale * torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        standardised = (z - self.loc) / self.scale
        return -0.5 * standardised.pow(2).sum(-1) - self.scale.log().sum(-1) - z.shape[-1] * HALF_LOG_2PI

    def entropy(self) -> torch.Tensor:
        return self.scale.log().sum(-1) + self.loc.shape[-1] * (0.5 + HALF_LOG_2PI)


@register_kl(DiagonalNormal, DiagonalNormal)
def _kl_diagonal_normals(q: DiagonalNormal, p: DiagonalNormal) -> torch.Tensor:
    variance_ratio = (q.scale / p.scale).pow(2)
    mean_term = ((q.loc - p.loc) / p.scale).pow(2)
    return 0.5 * (variance_ratio + mean_term - 1 - variance_ratio.log()).sum(-1)


class IndependentBernoulli(Independent):
    """Independent(Bernoulli(logits)) over the last `event_dims` axes, with a faster log_prob."""

    def __init__(self, logits: torch.Tensor, event_dims: int):
        super().__init__(Bernoulli(logits=logits, validate_args=False), event_dims, validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base_dist.logits
        dims = tuple(range(-self.reinterpreted_batch_ndims, 0))
        if logits.device.type == "cpu" and not x.requires_grad:
            return _BernoulliLogProbCPU.apply(logits, x, dims)
        # Elsewhere the library's fused kernel is the fast one; summing before negating saves a pass.
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=dims)


class _BernoulliLogProbCPU(torch.autograd.Function):
    """sum x*l - softplus(l) over `dims`, with softplus(l) = max(l, 0) + log(1 + exp(-|l|)).

    On CPUs torch's log-sigmoid kernel (behind binary_cross_entropy_with_logits and
    Bernoulli.log_prob) goes through a slow vectorised log1p: this form with log and exp takes a
    quarter of its time, and the backward, x - sigmoid(l), one kernel instead of the chain rule
    through every step. log(1 + t) for t = exp(-|l|) in (0, 1] is off from log1p(t) by at most one
    float32 rounding, 6e-8 nats per pixel."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(logits, x)
        ctx.dims = dims
        # |l| > 20 changes nothing (1 + exp(-20) rounds to 1) but would feed exp denormal results, slowly.
        softplus = logits.abs().clamp_(max=20).neg_().exp_().add_(1).log_().add_(logits.clamp(min=0))
        return (x * logits).sub_(softplus).sum(dim=dims)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, x = ctx.saved_tensors
        grad = grad.reshape(grad.shape + (1,) * len(ctx.dims))
        return (x - torch.sigmoid(logits)).mul_(grad), None, None
