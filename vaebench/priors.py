"""Priors p(z). A prior is an nn.Module holding learnable parameters; calling it returns p(z) as a
torch.distributions object for the current step, so the VampPrior encodes its pseudo-inputs once
per call, not once per sample.

- `StandardPrior`: N(0, sigma^2 I), an `IsotropicNormal`: KL(q || p) is analytic.
- `MixturePrior`: K learned diagonal Gaussians with softmax weights.
- `VampPrior`: p(z) = sum_k w_k q(z | u_k) with K learned pseudo-inputs (Tomczak & Welling 2018).
- `AggregatePosteriorPrior`: p(z) = 1/N sum_n q(z | x_n) over the whole training split, the end of the
  empirical-Bayes axis (the VampPrior with K = N pseudo-inputs fixed at the data).
"""

from __future__ import annotations

import math
import logging
from typing import Annotated, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, constraints
from torch.utils.checkpoint import checkpoint

from vaebench.checks import Count, Positive, Unused
from vaebench.distributions import DiagonalNormal, IsotropicNormal
from vaebench.errors import UserError

log = logging.getLogger(__name__)


# Elements of one block of component log-densities in `log_prob` and `marginal_log_prob` (128 MB in
# float64): the marginals of the aggregate posterior of 50,000 points at 1,000 z would otherwise be
# one (40, 1,000, 50,000) array, 16 GB.
MIXTURE_BLOCK_ELEMENTS = 1 << 24


class DiagonalGaussianMixture(Distribution):
    """sum_k w_k N(loc_k, diag(scale_k^2)) over R^D, with a fast log-density.

    Every component's log-density at every z, log w_k + log N(z; mu_k, s_k), expands into one matrix
    product, [z^2, z, 1] @ [-1/(2 s^2) ; mu/s^2 ; c], with c_k holding log w_k and all that does not
    depend on z, instead of a (batch, K, D) broadcast: the same numbers, about twice as fast for the
    VampPrior's K = 500.

    The expansion differences terms of size ((|z| + |mu|) / s)^2 per dimension to get (z - mu)^2 / s^2:
    for sharp posteriors (s = 0.01, |mu| ~ 3, 40 dimensions) float32 loses whole nats. So it runs in
    `expansion_dtype`, float64 unless the caller knows float32 is accurate enough for its z
    (`float32_rounding_nats`); the result comes back in float32. The matrix product is a small part of
    a training step (K x (2D + 1) weights), so float64 there costs no measurable time.
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 expansion_dtype: torch.dtype = torch.float64):
        self.log_weights = torch.log_softmax(logits, dim=-1)
        self.loc, self.scale = loc, scale
        self.expansion_dtype = expansion_dtype
        loc, scale = loc.to(expansion_dtype), scale.to(expansion_dtype)
        precision = scale.pow(-2)
        constant = (
            self.log_weights.to(expansion_dtype)
            - 0.5 * (loc.pow(2) * precision).sum(-1)
            - scale.log().sum(-1)
            - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        )  # (K,)
        self._weights = torch.cat([-0.5 * precision, loc * precision, constant.unsqueeze(1)], dim=1).T  # (2D + 1, K)
        self._marginal_weights_cache: torch.Tensor | None = None
        self._buffer: torch.Tensor | None = None
        super().__init__(batch_shape=torch.Size(), event_shape=loc.shape[-1:], validate_args=False)

    def component_log_prob(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """log w_k + log N(z; loc_k, scale_k) for every k: shape (*batch, K), float32.

        `out` (without autograd): a float32 tensor of at least that many elements that receives the
        result, returned as a view of it. A loop over blocks of z then reuses one buffer: allocating
        and freeing such blocks (tens of MB) at every step fragments the C heap until a 50,000-point
        surgery holds over 20 GB."""
        flat = z.reshape(-1, z.shape[-1]).to(self.expansion_dtype)
        features = torch.cat([flat.pow(2), flat, flat.new_ones(len(flat), 1)], dim=1)
        if out is None:
            return (features @ self._weights).float().reshape(*z.shape[:-1], -1)
        result = out[: len(flat) * self._weights.shape[1]].view(len(flat), -1)
        product = self._expansion_buffer(result)
        torch.matmul(features, self._weights, out=product)
        return (result.copy_(product) if product is not result else result).view(*z.shape[:-1], -1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        rows = max(1, MIXTURE_BLOCK_ELEMENTS // len(self.loc))
        flat = z.reshape(-1, z.shape[-1])
        if len(flat) <= rows:
            return torch.logsumexp(self.component_log_prob(z), dim=-1)
        return torch.cat([torch.logsumexp(self.component_log_prob(block), dim=-1) for block in flat.split(rows)]
                         ).reshape(z.shape[:-1])

    def component_marginal_log_prob(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """log w_k + log N(z_j; loc_kj, scale_kj) for every dimension j, row of z and k: shape (D, rows, K);
        `out` as for `component_log_prob`.

        Per dimension one batched matrix product, [z^2, z, 1] @ [-1/(2 s^2) ; mu/s^2 ; c_j]."""
        flat = z.reshape(-1, z.shape[-1]).to(self.expansion_dtype)
        features = torch.stack([flat.pow(2), flat, torch.ones_like(flat)], dim=-1).transpose(0, 1)  # (D, rows, 3)
        if out is None:
            return torch.bmm(features, self._marginal_weights()).float()
        d, rows, k = len(features), len(flat), len(self.loc)
        result = out[: d * rows * k].view(d, rows, k)
        product = self._expansion_buffer(result)
        torch.bmm(features, self._marginal_weights(), out=product)
        return result.copy_(product) if product is not result else result

    def _expansion_buffer(self, result: torch.Tensor) -> torch.Tensor:
        """Where a product in the expansion's dtype goes before `result` (float32) receives it: `result`
        itself in float32, else one buffer this mixture keeps for all its calls."""
        if self.expansion_dtype == result.dtype:
            return result
        if self._buffer is None or self._buffer.numel() < result.numel():
            self._buffer = torch.empty(result.numel(), dtype=self.expansion_dtype, device=result.device)
        return self._buffer[: result.numel()].view(result.shape)

    def marginal_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_j) of each coordinate under the mixture's 1-D marginals: shape (*batch, D)."""
        flat = z.reshape(-1, z.shape[-1])
        rows = max(1, MIXTURE_BLOCK_ELEMENTS // (len(self.loc) * flat.shape[1]))
        return torch.cat([torch.logsumexp(self.component_marginal_log_prob(block), dim=-1).T for block in flat.split(rows)]
                         ).reshape(z.shape)

    def _marginal_weights(self) -> torch.Tensor:
        if self._marginal_weights_cache is None:  # (D, 3, K): built once, for all the blocks of z a caller evaluates
            loc, scale = self.loc.to(self.expansion_dtype), self.scale.to(self.expansion_dtype)
            precision = scale.pow(-2)
            constant = (self.log_weights.to(self.expansion_dtype).unsqueeze(1) - 0.5 * loc.pow(2) * precision
                        - scale.log() - 0.5 * math.log(2 * math.pi))
            self._marginal_weights_cache = torch.stack([-0.5 * precision, loc * precision, constant], dim=1).permute(2, 1, 0)
        return self._marginal_weights_cache

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            k = Categorical(logits=self.log_weights).sample(sample_shape)
            return self.loc[k] + self.scale[k] * torch.randn_like(self.loc[k])

    @property
    def mixture_weights(self) -> torch.Tensor:
        return self.log_weights.exp()


# float32's unit roundoff.
FLOAT32_EPS = float(torch.finfo(torch.float32).eps) / 2


def float32_rounding_nats(loc: torch.Tensor, scale: torch.Tensor) -> tuple[float, float]:
    """What float32 rounding costs the expanded log-densities of a mixture at points drawn from its own
    components, in nats: (joint, marginal sum) = (eps * max_k sum_j r_kj, eps * sum_j max_k r_kj), with
    r_kj = (2 |mu_kj| / s_kj + 4)^2 the size of the expansion's terms for a point within 4 sd of component k.

    An estimate, calibrated against float64 (scripts/BENCHMARKS.md): the joint error measured 0.2-0.8
    times it, the marginals' sum over dimensions under 1/40 of it. A point far from every component
    errs more, so this suits the aggregate posterior at its own samples, not a prior at any z. One
    number for a whole evaluation (the host reads it): never for a training step."""
    r = (2 * loc.abs() / scale + 4).pow(2)
    return float(FLOAT32_EPS * r.sum(-1).amax()), float(FLOAT32_EPS * r.amax(0).sum())


class StandardPrior(nn.Module):
    def __init__(self, latent_dim: int, sigma: Positive = 1.0, K: Annotated[Count | None, Unused()] = None):
        """`K` is accepted, and ignored, so that one sweep grid can set prior.K for every prior."""
        super().__init__()
        if K is not None:
            log.info(f"prior.K={K} is ignored by the standard prior, which has no components.")
        self.sigma = float(sigma)
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.full((latent_dim,), self.sigma))

    def forward(self) -> IsotropicNormal:
        return IsotropicNormal(self.loc, self.scale, self.sigma)


class MixturePrior(nn.Module):
    def __init__(self, latent_dim: int, K: Count = 500):
        super().__init__()
        self.K = K
        # Spread the means so the components start distinct; unit scales as in N(0, I).
        self.loc = nn.Parameter(torch.randn(K, latent_dim))
        self.raw_scale = nn.Parameter(torch.full((K, latent_dim), _inverse_softplus(1.0)))
        self.logits = nn.Parameter(torch.zeros(K))

    def forward(self) -> DiagonalGaussianMixture:
        return DiagonalGaussianMixture(self.logits, self.loc, F.softplus(self.raw_scale) + 1e-4)


class VampPrior(nn.Module):
    """p(z) = sum_k w_k q(z | u_k): the encoder applied to K learned pseudo-inputs u_k.

    `encode` is the model's own encoder, handed in as a callable (and not registered as a
    submodule) so the prior shares its weights without owning them. The pseudo-inputs stay within
    the range of `train_data` (an image's [0, 1] when it is not given); `init=data` starts them at K
    training points, `random` at the paper's pixels near 0.05; `learn_inputs=false` keeps them where
    they started.
    """

    def __init__(
        self,
        encode: Callable[[torch.Tensor], DiagonalNormal],
        data_shape: tuple[int, ...],
        train_data: torch.Tensor | None = None,
        K: Count = 500,
        init: Literal["random", "data"] = "random",
        learn_weights: bool = False,
        learn_inputs: bool = True,
    ):
        super().__init__()
        self.K = K
        self._encode = [encode]  # a list hides the bound method from nn.Module's attribute scan
        self.low, self.high = _data_range(train_data)
        if init == "data":
            start = _training_points(train_data, K)
        else:
            start = 0.05 + 0.01 * torch.randn(K, *data_shape)
        unit = ((start - self.low) / (self.high - self.low)).clamp(1e-3, 1 - 1e-3)
        # Frozen (learn_inputs=false, with init=data): p(z) is the aggregate posterior of K training points.
        self.raw_inputs = nn.Parameter(torch.logit(unit), requires_grad=learn_inputs)
        self.logits = nn.Parameter(torch.zeros(K), requires_grad=learn_weights)

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        unit = torch.sigmoid(self.raw_inputs)
        if (self.low, self.high) == (0.0, 1.0):  # images in [0, 1]: the same numbers, two passes fewer per step
            return unit
        return self.low + (self.high - self.low) * unit

    def forward(self) -> DiagonalGaussianMixture:
        q_z_given_u = self._encode[0](self.pseudo_inputs)
        return DiagonalGaussianMixture(self.logits, q_z_given_u.loc, q_z_given_u.scale)


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
    return torch.logsumexp(mixture.component_log_prob(z), dim=-1)


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
        return self._over_chunks(z, lambda m, flat: torch.logsumexp(m.component_marginal_log_prob(flat), dim=-1).T
                                 ).reshape(z.shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            index = torch.randint(len(self.inputs), torch.Size(sample_shape), device=self.inputs.device)
            return self.encode(self.inputs[index.reshape(-1)]).sample().reshape(*index.shape, -1)


def _data_range(train_data: torch.Tensor | None) -> tuple[float, float]:
    if train_data is None:
        return 0.0, 1.0
    low, high = float(train_data.min()), float(train_data.max())
    return low, (high if high > low else low + 1.0)


def _training_points(train_data: torch.Tensor | None, K: int) -> torch.Tensor:
    """K training points, drawn without labels, to start the pseudo-inputs at."""
    if train_data is None or len(train_data) < K:
        raise UserError(f"prior.K={K} with prior.init=data needs at least K training points; there are "
                        f"{0 if train_data is None else len(train_data)}.")
    return train_data[torch.randperm(len(train_data))[:K]].float().cpu()


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))
