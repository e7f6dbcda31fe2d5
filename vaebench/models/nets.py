"""Encoder and decoder building blocks. Encoders return q(z|x) as a diagonal Gaussian; decoders
return the raw output that a likelihood head (`Likelihood`) turns into p(x|z)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, Normal

from vaebench.distributions import DiagonalNormal, IndependentBernoulli

LikelihoodKind = Literal["bernoulli", "gaussian"]
GaussianVariance = Literal["pixel", "global"]  # learned per pixel, or one for all pixels
MIN_SCALE = 1e-4


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def diagonal_gaussian(params: torch.Tensor) -> DiagonalNormal:
    """Split the last axis into (loc, raw scale); softplus keeps the scale positive and smooth."""
    loc, raw_scale = params.chunk(2, dim=-1)
    return DiagonalNormal(loc, F.softplus(raw_scale) + MIN_SCALE)


class GaussianHead(nn.Module):
    """features -> N(loc, diag scale^2) over `dim` dimensions."""

    def __init__(self, n_in: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(n_in, 2 * dim)

    def forward(self, h: torch.Tensor) -> DiagonalNormal:
        return diagonal_gaussian(self.linear(h))


class GatedDense(nn.Module):
    """h = (W x + b) * sigmoid(V x + c), the gated linear unit of Dauphin et al. 2017, as the VampPrior
    paper's MLPs use it (no activation on W x + b). W and V are one matrix, one product instead of two."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.linear = nn.Linear(n_in, 2 * n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.linear(x).chunk(2, dim=-1)
        return value * torch.sigmoid(gate)


class LogVarianceHead(nn.Module):
    """features -> N(loc, diag exp(log_var)) with log_var clamped to [-6, 2], as the VampPrior paper's
    code bounds it (a hardtanh; its scales lie in [0.05, 2.7])."""

    LOW, HIGH = -6.0, 2.0

    def __init__(self, n_in: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(n_in, 2 * dim)

    def forward(self, h: torch.Tensor) -> DiagonalNormal:
        loc, log_var = self.linear(h).chunk(2, dim=-1)
        return DiagonalNormal(loc, torch.exp(0.5 * F.hardtanh(log_var, self.LOW, self.HIGH)))


def he_init(net: nn.Module) -> None:
    """Every linear map's weights from N(0, 2 / fan_in), biases left at torch's default: the VampPrior
    paper's code initialises its networks so (utils/nn.py, he_init)."""
    for module in net.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / module.in_features))


class MLPEncoder(nn.Module):
    """Two hidden layers; `gated`: the VampPrior paper's gated layers with its bounded log-variance."""

    def __init__(self, data_shape, hidden_dim: int, latent_dim: int, gated: bool = False):
        super().__init__()
        if gated:
            self.body = nn.Sequential(nn.Flatten(), GatedDense(math.prod(data_shape), hidden_dim),
                                      GatedDense(hidden_dim, hidden_dim))
            self.head = LogVarianceHead(hidden_dim, latent_dim)
        else:
            self.body = nn.Sequential(nn.Flatten(), mlp([math.prod(data_shape), hidden_dim, hidden_dim]), nn.ReLU())
            self.head = GaussianHead(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalNormal:
        return self.head(self.body(x))


class MLPDecoder(nn.Module):
    """Two hidden layers, then the likelihood's parameters (Bernoulli logits: the paper's sigmoid output
    layer, its sigmoid taken inside the likelihood)."""

    def __init__(self, data_shape, hidden_dim: int, latent_dim: int, gated: bool = False):
        super().__init__()
        if gated:
            self.net = nn.Sequential(GatedDense(latent_dim, hidden_dim), GatedDense(hidden_dim, hidden_dim),
                                     nn.Linear(hidden_dim, math.prod(data_shape)))
        else:
            self.net = mlp([latent_dim, hidden_dim, hidden_dim, math.prod(data_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (H -> H/4), then a dense layer; for 28x28 and 32x32 images."""

    def __init__(self, data_shape, hidden_dim: int, latent_dim: int, channels: int):
        super().__init__()
        c, h, w = data_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * channels * (h // 4) * (w // 4), hidden_dim), nn.ReLU(),
        )
        self.head = GaussianHead(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalNormal:
        return self.head(self.body(x))


class ConvDecoder(nn.Module):
    def __init__(self, data_shape, hidden_dim: int, latent_dim: int, channels: int):
        super().__init__()
        c, h, w = data_shape
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 2 * channels * (h // 4) * (w // 4)), nn.ReLU(),
            nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(channels, c, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class BurgessEncoder(nn.Module):
    """Burgess et al. 2018 ("Understanding disentangling in beta-VAE"), appendix A.1: 4x4 stride-2
    convolutions of `channels` channels down to 4x4 (four for 64x64 images, three for 32x32), then two
    dense layers of `hidden_dim` units."""

    def __init__(self, data_shape, hidden_dim: int, latent_dim: int, channels: int):
        super().__init__()
        c, h, _ = data_shape
        layers: list[nn.Module] = []
        for i in range(int(math.log2(h // 4))):
            layers += [nn.Conv2d(c if i == 0 else channels, channels, 4, 2, 1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 16, hidden_dim), nn.ReLU(),
                                  nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        self.head = GaussianHead(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalNormal:
        return self.head(self.body(x))


class BurgessDecoder(nn.Module):
    """The encoder's mirror: two dense layers, then 4x4 stride-2 transposed convolutions up from 4x4."""

    def __init__(self, data_shape, hidden_dim: int, latent_dim: int, channels: int):
        super().__init__()
        c, h, _ = data_shape
        n = int(math.log2(h // 4))
        layers: list[nn.Module] = [nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                   nn.ReLU(), nn.Linear(hidden_dim, channels * 16), nn.ReLU(),
                                   nn.Unflatten(1, (channels, 4, 4))]
        for i in range(n):
            last = i == n - 1
            layers.append(nn.ConvTranspose2d(channels, c if last else channels, 4, 2, 1))
            if not last:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Likelihood(nn.Module):
    """Turns decoder output into p(x|z): Bernoulli(logits), or Gaussian(mean) with a learned
    variance per pixel or one shared by all pixels."""

    def __init__(self, kind: LikelihoodKind, data_shape, variance: GaussianVariance = "pixel"):
        super().__init__()
        self.kind, self.data_shape = kind, tuple(data_shape)
        if kind == "gaussian":
            shape = self.data_shape if variance == "pixel" else (1,) * len(self.data_shape)
            self.raw_scale = nn.Parameter(torch.full(shape, math.log(math.expm1(0.1))))

    def forward(self, output: torch.Tensor) -> Independent:
        output = output.reshape(-1, *self.data_shape).float()
        if self.kind == "bernoulli":
            return IndependentBernoulli(output, len(self.data_shape))
        return Independent(Normal(output, F.softplus(self.raw_scale) + 1e-3, validate_args=False), len(self.data_shape))

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        output = output.reshape(-1, *self.data_shape)
        return torch.sigmoid(output) if self.kind == "bernoulli" else output
