"""The aggregate-posterior prior p(z) = 1/N sum_n q(z | x_n) over the whole training split: the end of
the empirical-Bayes axis (the VampPrior with K = N pseudo-inputs fixed at the data)."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Callable

import torch
from torch import nn
from torch.distributions import Distribution, constraints
from torch.utils.checkpoint import checkpoint

from vaebench.config.checks import Count, Unused
from vaebench.distributions import FLOAT32_EPS, DiagonalGaussianMixture, DiagonalNormal
from vaebench.distributions.mixture import logsumexp
from vaebench.errors import UserError

log = logging.getLogger(__name__)


class AggregatePosteriorPrior(nn.Module):
    """p(z) = 1/N sum_n q(z | x_n) over all N training points: the aggregate posterior itself, the prior
    that depends most on the data. On the training split it leaves no marginal KL, so the whole KL is
    the mutual information I(n; z) <= log N.

    `train_data` is the training split as evaluation scores it (dynamically binarised points as one
    fixed Bernoulli image each), so the prior is exactly the aggregate whose surgery the final metrics
    report. In training p(z) carries gradients through the encoder at every x_n: each step encodes
    the whole split, `chunk_size` points at a time, each chunk recomputed in the backward pass instead
    of kept (torch.utils.checkpoint), so memory does not grow with N. Evaluation (no gradients)
    encodes the split once per call and is a plain `DiagonalGaussianMixture` of N components.
    """

    def __init__(self, latent_dim: int, encode: Callable[[torch.Tensor], DiagonalNormal],
                 train_data: torch.Tensor | None = None, chunk_size: Count = 1024, K: Annotated[Count | None, Unused()] = None):
        """`K` is accepted, and ignored (K is N here), so that one sweep grid can set prior.K for every prior."""
        super().__init__()
        if train_data is None or len(train_data) == 0:
            raise UserError("prior=aggregate needs the training split (train_data): it is the mixture of the "
                            "posteriors of all training points.")
        if K is not None:
            log.info(f"prior.K={K} is ignored by the aggregate-posterior prior, whose K is the training split's "
                     f"size, {len(train_data)}.")
        self._encode = [encode]  # not a submodule: the model owns the encoder
        self.latent_dim, self.chunk_size = latent_dim, chunk_size
        self.register_buffer("inputs", train_data, persistent=False)  # rebuilt from the dataset, not checkpointed

    @property
    def K(self) -> int:
        return len(self.inputs)

    def forward(self) -> Distribution:
        if torch.is_grad_enabled():
            return EncodedAggregate(self._encode[0], self.inputs, self.latent_dim, self.chunk_size)
        posteriors = [self._encode[0](block) for block in self.inputs.split(self.chunk_size)]
        loc, scale = torch.cat([q.loc for q in posteriors]), torch.cat([q.scale for q in posteriors])
        return DiagonalGaussianMixture(torch.zeros(len(loc), device=loc.device), loc, scale)


# Elements of one block's (rows, N) log-density matrix in a training step's log p(z).
AGGREGATE_PAIRWISE_BUDGET = 1 << 22


def _log_sum(mixture: DiagonalGaussianMixture, z: torch.Tensor) -> torch.Tensor:
    return logsumexp(mixture.component_log_prob(z))


class EncodedAggregate(Distribution):
    """1/N sum_n q(z | x_n) with the encoder in the autograd graph, evaluated a chunk of x_n at a time.

    `log_prob` (every training step) encodes all N points without gradients, which gives its value
    and its gradient in z exactly. Its gradient in the encoder's weights, sum_n r_n(z) d log q(z|x_n),
    with responsibilities r_n(z) = q(z|x_n) / sum_m q(z|x_m), then needs only the points whose r_n
    is not negligible for some z of the call: those are encoded again with gradients. A point left
    out has r_n < 2^-24 / N for every z, so all of them together weigh less than float32's rounding
    of the sum (2^-24 of it). Trained posteriors are sharp, so few points remain and a step costs
    little more than one forward pass over the split, instead of a forward, a recomputation and a
    backward pass over all of it (scripts/bench_aggregate_prior.py).

    The points are encoded `chunk_size` at a time, those with gradients under torch.utils.checkpoint
    (recomputed in the backward pass), and z in blocks of rows: beside the N posteriors' locations and
    scales, a call holds one chunk's activations and one block's log-densities, whatever N."""

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, encode: Callable[[torch.Tensor], DiagonalNormal], inputs: torch.Tensor, latent_dim: int,
                 chunk_size: int):
        self.encode, self.inputs, self.chunk_size = encode, inputs, chunk_size
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([latent_dim]), validate_args=False)

    def _over_chunks(self, z: torch.Tensor, per_chunk) -> torch.Tensor:
        """log 1/N sum_n exp(.) of `per_chunk(mixture of a chunk, z)`, the chunk's log-sum over its points."""
        flat = z.reshape(-1, z.shape[-1])
        parts = [checkpoint(self._chunk, flat, block, per_chunk, use_reentrant=False, preserve_rng_state=False)
                 for block in self.inputs.split(self.chunk_size)]
        return torch.logsumexp(torch.stack(parts), dim=0) - math.log(len(self.inputs))

    def _chunk(self, flat: torch.Tensor, block: torch.Tensor, per_chunk) -> torch.Tensor:
        q = self.encode(block)
        # Zero logits weigh each point 1 / len(block); the caller's 1/N replaces that.
        mixture = DiagonalGaussianMixture(torch.zeros(len(block), device=block.device), q.loc, q.scale)
        return per_chunk(mixture, flat) + math.log(len(block))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(-1, z.shape[-1])
        with torch.no_grad():
            posteriors = [self.encode(block) for block in self.inputs.split(self.chunk_size)]
            loc, scale = torch.cat([q.loc for q in posteriors]), torch.cat([q.scale for q in posteriors])
        n = len(loc)
        mixture = DiagonalGaussianMixture(torch.zeros(n, device=loc.device), loc, scale)
        rows = max(1, AGGREGATE_PAIRWISE_BUDGET // n)
        # The value and its z-gradient, over all N; each block's (rows, N) matrix is recomputed in backward.
        log_p = torch.cat([checkpoint(_log_sum, mixture, block, use_reentrant=False) for block in flat.split(rows)])
        with torch.no_grad():
            blocks = list(zip(flat.split(rows), log_p.split(rows)))
            log_largest = torch.full((n,), -math.inf, device=loc.device)  # each point's largest log r_n(z) over z
            for block, total in blocks:
                log_largest = torch.maximum(log_largest, (mixture.component_log_prob(block) - total.unsqueeze(1)).amax(0))
            kept = (log_largest > math.log(FLOAT32_EPS / n)).nonzero().squeeze(1)
            responsibility = torch.cat([(mixture.component_log_prob(block) - total.unsqueeze(1))[:, kept].exp()
                                        for block, total in blocks])  # (rows of z, kept points)
        surrogate = sum(checkpoint(self._weighted_log_density, flat.detach(), self.inputs[index], weights,
                                   use_reentrant=False, preserve_rng_state=False)
                        for index, weights in zip(kept.split(self.chunk_size), responsibility.split(self.chunk_size, dim=1)))
        # Adds 0 to the value, and sum_n r_n d log q(z|x_n) to the encoder's gradient.
        return (log_p + (surrogate - surrogate.detach())).reshape(z.shape[:-1])

    def _weighted_log_density(self, flat: torch.Tensor, block: torch.Tensor, responsibility: torch.Tensor) -> torch.Tensor:
        """sum_n r_n log q(z|x_n) over a block of points, for each z: shape (rows,)."""
        q = self.encode(block)
        # The mixture's constant log-weights add nothing to the gradient.
        return (responsibility * DiagonalGaussianMixture(torch.zeros(len(block), device=block.device), q.loc, q.scale)
                .component_log_prob(flat)).sum(-1)

    def marginal_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_j) of each coordinate under the aggregate's 1-D marginals: shape (*batch, D)."""
        return self._over_chunks(z, lambda m, flat: logsumexp(m.component_marginal_log_prob(flat)).T
                                 ).reshape(z.shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            index = torch.randint(len(self.inputs), torch.Size(sample_shape), device=self.inputs.device)
            return self.encode(self.inputs[index.reshape(-1)]).sample().reshape(*index.shape, -1)
