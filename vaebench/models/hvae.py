"""The two-level hierarchical VAE of Tomczak & Welling 2018, section 3.3: the configured prior acts on
the top layer z2, a learned conditional p(z1|z2) on the lower one."""

from __future__ import annotations

import math

import torch
from torch import nn

from vaebench.config.checks import Count
from vaebench.models.nets import (GatedDense, GaussianHead, GaussianVariance, Likelihood, LikelihoodKind, LogVarianceHead,
                                  MLPEncoder, he_init, mlp)
from vaebench.models.vae import LatentVariableModel, repeat_samples


class HVAE(LatentVariableModel):
    """q(z2|x) q(z1|x,z2); p(x|z1,z2) p(z1|z2) p(z2), with the configured prior on z2."""

    def __init__(self, data_shape, latent_dim: Count = 40, hidden_dim: Count = 300,
                 likelihood: LikelihoodKind = "bernoulli", gaussian_variance: GaussianVariance = "pixel",
                 gated: bool = False):
        """`latent_dim` is the size of each of z1 and z2. `gated`: every layer as the paper's code builds
        it (models/HVAE_2level.py: gated layers, log-variances in [-6, 2], He-initialised weights); else
        ReLU layers at torch's initialisation."""
        super().__init__()
        self.latent_dim = latent_dim
        data_dim = math.prod(data_shape)
        self.encoder = MLPEncoder(data_shape, hidden_dim, latent_dim, gated)  # q(z2|x)
        if gated:
            self.q_z1_x = nn.Sequential(nn.Flatten(), GatedDense(data_dim, hidden_dim))
            self.q_z1_z2 = GatedDense(latent_dim, hidden_dim)
            self.q_z1_head = nn.Sequential(GatedDense(2 * hidden_dim, hidden_dim), LogVarianceHead(hidden_dim, latent_dim))
            self.p_z1 = nn.Sequential(GatedDense(latent_dim, hidden_dim), GatedDense(hidden_dim, hidden_dim),
                                      LogVarianceHead(hidden_dim, latent_dim))
            self.p_x_z1 = GatedDense(latent_dim, hidden_dim)
            self.p_x_z2 = GatedDense(latent_dim, hidden_dim)
            self.p_x_head = nn.Sequential(GatedDense(2 * hidden_dim, hidden_dim), nn.Linear(hidden_dim, data_dim))
        else:
            self.q_z1_x = nn.Sequential(nn.Flatten(), nn.Linear(data_dim, hidden_dim), nn.ReLU())
            self.q_z1_z2 = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU())
            self.q_z1_head = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU(), GaussianHead(hidden_dim, latent_dim))
            self.p_z1 = nn.Sequential(mlp([latent_dim, hidden_dim, hidden_dim]), nn.ReLU(), GaussianHead(hidden_dim, latent_dim))
            self.p_x_z1 = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU())
            self.p_x_z2 = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU())
            self.p_x_head = mlp([2 * hidden_dim, hidden_dim, data_dim])
        self.likelihood = Likelihood(likelihood, data_shape, gaussian_variance)
        if gated:
            he_init(self)

    def encode(self, x: torch.Tensor):
        return self.encoder(x)

    def latents(self, x, p_z2, samples: int = 1, adjust=None):
        """`adjust(name, q)`: the module's docstring (vae.py), for q(z2|x) and q(z1|x,z2) in turn."""
        q_z2 = repeat_samples(self.encode(x), samples)
        if adjust is not None:
            q_z2 = adjust("z2", q_z2)
        z2 = q_z2.rsample()
        x_features = self.q_z1_x(x)
        x_features = x_features.repeat(samples, 1) if samples > 1 else x_features  # no copy on a training step
        q_z1 = self.q_z1_head(torch.cat([x_features, self.q_z1_z2(z2)], dim=-1))
        if adjust is not None:
            q_z1 = adjust("z1", q_z1)
        z1 = q_z1.rsample()
        return (z1, z2), {"z2": (q_z2, p_z2, z2), "z1": (q_z1, self.p_z1(z2), z1)}

    def decoder_output(self, latents):
        z1, z2 = latents
        return self.p_x_head(torch.cat([self.p_x_z1(z1), self.p_x_z2(z2)], dim=-1))

    def sample_latents(self, n, p_z2):
        z2 = p_z2.sample((n,))
        return self.p_z1(z2).sample(), z2
