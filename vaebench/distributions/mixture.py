"""A mixture of diagonal Gaussians with a fast, accurate log-density: the density of the mixture
priors (MoG, VampPrior, the aggregate posterior) and of the aggregate posterior q(z) in the ELBO
surgery."""

from __future__ import annotations

import functools
import math

import torch
from torch.distributions import Categorical, Distribution, constraints

# Terms below exp(-80) ~ 2e-35 of the largest count as that: a sum that is at least 1 cannot tell,
# while exp() of far smaller numbers takes a slow path on CPUs (18x slower on this project's 2-core
# CPU for the log-densities of a mixture's far components).
LOG_NEGLIGIBLE = -80.0


def logsumexp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """torch.logsumexp(x, dim) for finite x, with its gradient (0 for the negligible terms, whose true
    gradient is below e^-80 of the largest), without exp()'s slow path."""
    top = x.detach().amax(dim, keepdim=True)
    return (x - top).clamp(min=LOG_NEGLIGIBLE).exp().sum(dim).log() + top.squeeze(dim)


LOG2_E = 1 / math.log(2)
LOG2_NEGLIGIBLE = LOG_NEGLIGIBLE * LOG2_E


def _running_log2sumexp2(tile: torch.Tensor, top: torch.Tensor | None, total: torch.Tensor | None):
    """Folds one tile of base-2 log-densities (..., columns), which it overwrites, into the running
    (maximum, sum of 2^(x - maximum)) of its rows; the first tile starts them."""
    tile_top = tile.amax(dim=-1)
    if top is None:
        return tile_top, tile.sub_(tile_top.unsqueeze(-1)).clamp_(min=LOG2_NEGLIGIBLE).exp2_().sum(dim=-1)
    new_top = torch.maximum(top, tile_top)
    total = total.mul_((top - new_top).clamp_(min=LOG2_NEGLIGIBLE).exp2_())
    return new_top, total.add_(tile.sub_(new_top.unsqueeze(-1)).clamp_(min=LOG2_NEGLIGIBLE).exp2_().sum(dim=-1))


# Elements of one block of component log-densities in `log_prob` and `marginal_log_prob` (128 MB in
# float64): the marginals of the aggregate posterior of 50,000 points at 1,000 z would otherwise be
# one (40, 1,000, 50,000) array, 16 GB.
MIXTURE_BLOCK_ELEMENTS = 1 << 24
# Without gradients on a CPU: a block of 16 MB stays in the caches between its matrix product and its
# logsumexp (up to 1.8x faster than 64 MB blocks on a 2-core CPU; scripts/bench_diagnostics.py).
CPU_BLOCK_ELEMENTS = 1 << 22


# Components per tile on a CPU (`_logsumexp_in_tiles`): a wide mixture (the aggregate posterior of 50,000
# points) is reduced 2,048 components at a time, whose weights (2D + 1 numbers each) and block of
# log-densities stay in the caches; 1.35x the rate of whole rows of 50,000 (scripts/bench_diagnostics.py).
CPU_TILE_COMPONENTS = 2048


def block_elements(device: torch.device) -> int:
    return min(MIXTURE_BLOCK_ELEMENTS, CPU_BLOCK_ELEMENTS) if device.type == "cpu" else MIXTURE_BLOCK_ELEMENTS


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
        self._weights_in_bits: torch.Tensor | None = None  # the weights times log2(e), for `_joint_tiles`
        self._marginal_weights_in_bits: torch.Tensor | None = None
        self._buffer: torch.Tensor | None = None
        super().__init__(batch_shape=torch.Size(), event_shape=loc.shape[-1:], validate_args=False)

    def component_log_prob(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """log w_k + log N(z; loc_k, scale_k) for every k: shape (*batch, K), float32.

        `out` (without autograd): a float32 tensor of at least that many elements that receives the
        result, returned as a view of it. A loop over blocks of z then reuses one buffer: allocating
        and freeing such blocks (tens of MB) at every step fragments the C heap until a 50,000-point
        surgery holds over 20 GB."""
        features = self._joint_features(z.reshape(-1, z.shape[-1]))
        if out is None:
            return (features @ self._weights).float().reshape(*z.shape[:-1], -1)
        return self._product_into(features, self._weights, out).view(*z.shape[:-1], -1)

    def log_prob(self, z: torch.Tensor, on_rows=None) -> torch.Tensor:
        """`on_rows(n)` (without autograd) hears of each block of n rows of z done: a long evaluation's progress."""
        flat = z.reshape(-1, z.shape[-1])
        if not self._needs_graph(z):
            tiles = functools.partial(_joint_tiles, self)
            return _logsumexp_in_tiles(flat, tiles, len(self.loc), on_rows).reshape(z.shape[:-1])
        rows = max(1, MIXTURE_BLOCK_ELEMENTS // len(self.loc))
        if len(flat) <= rows:
            return logsumexp(self.component_log_prob(z))
        return torch.cat([logsumexp(self.component_log_prob(block)) for block in flat.split(rows)]
                         ).reshape(z.shape[:-1])

    def component_marginal_log_prob(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """log w_k + log N(z_j; loc_kj, scale_kj) for every dimension j, row of z and k: shape (D, rows, K);
        `out` as for `component_log_prob`.

        Per dimension one batched matrix product, [z^2, z, 1] @ [-1/(2 s^2) ; mu/s^2 ; c_j]."""
        features = self._marginal_features(z.reshape(-1, z.shape[-1]))
        if out is None:
            return torch.bmm(features, self._marginal_weights()).float()
        return self._product_into(features, self._marginal_weights(), out)

    def _joint_features(self, flat: torch.Tensor) -> torch.Tensor:
        flat = flat.to(self.expansion_dtype)
        return torch.cat([flat.pow(2), flat, flat.new_ones(len(flat), 1)], dim=1)  # (rows, 2D + 1)

    def _marginal_features(self, flat: torch.Tensor) -> torch.Tensor:
        flat = flat.to(self.expansion_dtype)
        return torch.stack([flat.pow(2), flat, torch.ones_like(flat)]).permute(2, 1, 0).contiguous()  # (D, rows, 3)

    def _product_into(self, features: torch.Tensor, weights: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """features @ weights (batched where they are 3-D) as float32, written into `out`'s first elements."""
        shape = (*features.shape[:-1], weights.shape[-1])
        return self._written(out, shape, lambda product: torch.matmul(features, weights, out=product))

    def _written(self, out: torch.Tensor, shape, fill) -> torch.Tensor:
        """`fill(product)` writes an array of `shape` in the expansion's dtype; it comes back in float32, in
        `out`'s first elements."""
        result = out[: math.prod(shape)].view(shape)
        product = self._expansion_buffer(result)
        fill(product)
        return result.copy_(product) if product is not result else result

    def _expansion_buffer(self, result: torch.Tensor) -> torch.Tensor:
        """Where a product in the expansion's dtype goes before `result` (float32) receives it: `result`
        itself in float32, else one buffer this mixture keeps for all its calls."""
        if self.expansion_dtype == result.dtype:
            return result
        if self._buffer is None or self._buffer.numel() < result.numel():
            self._buffer = torch.empty(result.numel(), dtype=self.expansion_dtype, device=result.device)
        return self._buffer[: result.numel()].view(result.shape)

    def marginal_log_prob(self, z: torch.Tensor, on_rows=None) -> torch.Tensor:
        """log p(z_j) of each coordinate under the mixture's 1-D marginals: shape (*batch, D); `on_rows` as
        for `log_prob`."""
        flat = z.reshape(-1, z.shape[-1])
        if not self._needs_graph(z):
            return _logsumexp_in_tiles(flat, functools.partial(_marginal_tiles, self), len(self.loc), on_rows,
                                       flat.shape[1]).T.reshape(z.shape)
        rows = max(1, MIXTURE_BLOCK_ELEMENTS // (len(self.loc) * flat.shape[1]))
        return torch.cat([logsumexp(self.component_marginal_log_prob(block)).T for block in flat.split(rows)]
                         ).reshape(z.shape)

    def _needs_graph(self, z: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (z.requires_grad or self._weights.requires_grad)

    def _marginal_weights(self) -> torch.Tensor:
        if self._marginal_weights_cache is None:  # (D, 3, K): built once, for all the blocks of z a caller evaluates
            loc, scale = self.loc.to(self.expansion_dtype), self.scale.to(self.expansion_dtype)
            precision = scale.pow(-2)
            constant = (self.log_weights.to(self.expansion_dtype).unsqueeze(1) - 0.5 * loc.pow(2) * precision
                        - scale.log() - 0.5 * math.log(2 * math.pi))
            # contiguous, so that a tile of components is a plain strided matrix to the batched product
            self._marginal_weights_cache = torch.stack([-0.5 * precision, loc * precision, constant], dim=1
                                                       ).permute(2, 1, 0).contiguous()
        return self._marginal_weights_cache

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            k = Categorical(logits=self.log_weights).sample(sample_shape)
            return self.loc[k] + self.scale[k] * torch.randn_like(self.loc[k])

    @property
    def mixture_weights(self) -> torch.Tensor:
        return self.log_weights.exp()


def _joint_tiles(mixture: DiagonalGaussianMixture, block: torch.Tensor, columns: int, buffer: torch.Tensor):
    """log2 of w_k N(z; loc_k, scale_k) at the rows of `block`, `columns` components at a time: (rows,
    columns), in `buffer` (`_logsumexp_in_tiles`)."""
    if mixture._weights_in_bits is None:
        mixture._weights_in_bits = mixture._weights * LOG2_E
    features = mixture._joint_features(block)
    for start in range(0, len(mixture.loc), columns):
        yield mixture._product_into(features, mixture._weights_in_bits[:, start:start + columns], buffer)


def _marginal_tiles(mixture: DiagonalGaussianMixture, block: torch.Tensor, columns: int, buffer: torch.Tensor):
    """log2 of w_k N(z_j; loc_kj, scale_kj) at the rows of `block`, `columns` components at a time:
    (D, rows, columns). Elementwise, c + a z^2 + b z: a batched product with 3 terms per dot product
    runs at half its rate."""
    if mixture._marginal_weights_in_bits is None:
        mixture._marginal_weights_in_bits = mixture._marginal_weights() * LOG2_E
    z = block.to(mixture.expansion_dtype).T.unsqueeze(-1)  # (D, rows, 1)
    squared = z.pow(2)
    for start in range(0, len(mixture.loc), columns):
        a, b, c = mixture._marginal_weights_in_bits[:, :, start:start + columns].unbind(1)  # each (D, columns)
        yield mixture._written(buffer, (z.shape[0], z.shape[1], a.shape[-1]), lambda product: torch.addcmul(
            c.unsqueeze(1), a.unsqueeze(1), squared, out=product).addcmul_(b.unsqueeze(1), z))


def _logsumexp_in_tiles(flat: torch.Tensor, tiles_of, components: int, on_rows=None, per_row: int = 1) -> torch.Tensor:
    """A mixture's log-density (`tiles_of`: `_joint_tiles` of it, shape (rows,)) or 1-D marginals
    (`_marginal_tiles`, `per_row` = D, shape (D, rows)) at every row of `flat`, without gradients: an
    evaluation's many points, at a fraction of the time and memory of the general path.

    The component log-densities are made and reduced a tile at a time, in one buffer kept for all of
    them (no heap churn): blocks of rows, and on a CPU at most CPU_TILE_COMPONENTS components, whose
    weights and log-densities stay in the caches between the product and the reduction. The tiles
    of one block combine by the running maximum and sum of a logsumexp in base 2 (`exp2` runs at
    2.3x the rate of `exp` on a CPU; the tiles come scaled by log2(e))."""
    columns = min(components, CPU_TILE_COMPONENTS) if flat.device.type == "cpu" else components
    rows = max(1, block_elements(flat.device) // (columns * per_row))
    buffer = torch.empty(min(rows, len(flat)) * columns * per_row, device=flat.device)
    parts = []
    for block in flat.split(rows):
        top = total = None
        for tile in tiles_of(block, columns, buffer):
            top, total = _running_log2sumexp2(tile, top, total)
        parts.append(total.log2_().add_(top).mul_(math.log(2)))
        if on_rows is not None:
            on_rows(len(block))
    return torch.cat(parts, dim=-1) if parts else flat.new_zeros(0)


# float32's unit roundoff.
FLOAT32_EPS = float(torch.finfo(torch.float32).eps) / 2


def float32_rounding_nats(loc: torch.Tensor, scale: torch.Tensor) -> tuple[float, float]:
    """What float32 rounding costs the expanded log-densities of a mixture at points drawn from its own
    components, in nats: (joint, marginal sum) = (eps * max_k sum_j r_kj, eps * sum_j max_k r_kj), with
    r_kj = (2 |mu_kj| / s_kj + 4)^2 the size of the expansion's terms for a point within 4 sd of component k.

    An estimate, calibrated against float64 (scripts/BENCHMARKS.md): the joint error measured 0.2-0.8
    times it, the marginals' sum over dimensions under 1/40 of it. A point far from every component
    errs more in nats, though not relative to its (far lower) log-density, which is what a prior's
    log-density at any z needs (`expansion_dtype_at`)."""
    r = (2 * loc.abs() / scale + 4).pow(2)
    return float(FLOAT32_EPS * r.sum(-1).amax()), float(FLOAT32_EPS * r.amax(0).sum())


# The largest float32 rounding estimate (float32_rounding_nats) at which a mixture's log-density expands in
# float32; above it the expansion runs in float64 (1.4x slower for the joint, 1.9x for the marginals on
# a CPU). Calibrated so that the measured error stays under 1e-3 nats per point.
FLOAT32_JOINT_NATS = 1e-3
FLOAT32_MARGINAL_NATS = 2e-2


def expansion_dtype_at(loc: torch.Tensor, scale: torch.Tensor) -> torch.dtype:
    """The expansion's dtype for a prior's components at a training step: float32 where its rounding
    estimate allows (a VampPrior's float64 expansion cost 5% of its step on a 2-core CPU), float64 where
    they are sharp. On an accelerator, and in a compiled step, always float64: reading the estimate would
    make the host wait for the device at every step (or break the compiled graph), and there the
    expansion's few small products cost nothing measurable."""
    if loc.device.type != "cpu" or torch.compiler.is_compiling():  # a compiled step: one graph, no host read
        return torch.float64
    with torch.no_grad():
        joint = FLOAT32_EPS * float((2 * loc.abs() / scale + 4).pow(2).sum(-1).amax())
    return torch.float32 if joint <= FLOAT32_JOINT_NATS else torch.float64
