"""The one-level VAE and what every model shares.

Every model (this module's and the two-level `HVAE`) exposes what the rest of vaebench needs and nothing more:
`encode(x) -> q(z|x)` (the top latent layer), `prior() -> p(z)`, `latents(x, p_z)` (a sample of every
layer with its posterior and prior), `decode(latents) -> p(x|z)`, `sample_latents(n, p_z)` and
`latent_dim` (of the top layer, which the prior acts on). The prior is assigned after the model is
built (`vaebench.config.components.build_model`): the VampPrior needs the model's encoder.

`latents(x, p_z, samples, adjust)` hands each layer's posterior, by name and with its batch already
repeated `samples` times (sample-major), to `adjust(name, q) -> q'`, when given, and draws that layer's
sample as `q'.rsample()`: the inference-gap metrics replace the encoder's answer for one point by a
better one of the same family, and draw it from noise they fix (`vaebench.metrics.inference_gaps`).
"""

from __future__ import annotations


import torch
from torch import nn

from vaebench.config.checks import Count
from vaebench.distributions import DiagonalNormal, IndependentBernoulli
from vaebench.errors import UserError
from vaebench.metrics import elbo
from vaebench.models.nets import (
    BurgessDecoder,
    BurgessEncoder,
    ConvDecoder,
    ConvEncoder,
    GaussianVariance,
    Likelihood,
    LikelihoodKind,
    MLPDecoder,
    MLPEncoder,
    he_init,
)


class LatentVariableModel(nn.Module):
    """What every model shares once it defines latents / decode / sample_latents."""

    likelihood: Likelihood
    prior: nn.Module

    def terms(self, x: torch.Tensor, p_z=None) -> dict[str, torch.Tensor]:
        """Per-point ELBO terms from one sample of q(z|x). Pass `p_z` to reuse a prior built once."""
        latents, layers = self.latents(x, self.prior() if p_z is None else p_z)
        return elbo.elbo_terms(self.decode(latents).log_prob(x), layers)

    def log_importance_weights(self, x: torch.Tensor, p_z, samples: int = 1, adjust=None) -> torch.Tensor:
        """log p(x, z) - log q(z|x) at `samples` draws z ~ q(z|x) per point: shape (samples, batch).
        The encoder sees each point once; only the samples are repeated."""
        latents, layers = self.latents(x, p_z, samples, adjust)
        p_x = self.decode(latents)
        repeated = x if isinstance(p_x, IndependentBernoulli) else x.repeat(samples, *([1] * (x.dim() - 1)))
        log_w = p_x.log_prob(repeated)  # the Bernoulli broadcasts each point to its draws itself
        for q, p, z in layers.values():
            log_w = log_w + p.log_prob(z) - q.log_prob(z)
        return log_w.view(samples, len(x))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Mean images of p(x|z) at z drawn from the prior by its own sampler."""
        return self.likelihood.mean(self.decoder_output(self.sample_latents(n, self.prior())))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        latents, _ = self.latents(x, self.prior())
        return self.likelihood.mean(self.decoder_output(latents))

    def decode(self, latents) -> torch.distributions.Distribution:
        return self.likelihood(self.decoder_output(latents))


class VAE(LatentVariableModel):
    """One latent layer: q(z|x) from `encoder`, p(x|z) from `decoder` and `likelihood`."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor):
        return self.encoder(x)

    def latents(self, x, p_z, samples: int = 1, adjust=None):
        q = repeat_samples(self.encode(x), samples)
        if adjust is not None:
            q = adjust("z", q)
        z = q.rsample()
        return z, {"z": (q, p_z, z)}

    def decoder_output(self, z):
        return self.decoder(z)

    def sample_latents(self, n, p_z):
        return p_z.sample((n,))


class MLPVAE(VAE):
    """The VampPrior paper's MLP VAE: two hidden layers in the encoder and in the decoder. `gated`: as
    the paper's code builds them (gated layers, the log-variance in [-6, 2], He-initialised weights);
    else ReLU layers at torch's initialisation."""

    def __init__(self, data_shape, latent_dim: Count = 40, hidden_dim: Count = 300,
                 likelihood: LikelihoodKind = "bernoulli", gaussian_variance: GaussianVariance = "pixel",
                 gated: bool = False):
        super().__init__(MLPEncoder(data_shape, hidden_dim, latent_dim, gated),
                         MLPDecoder(data_shape, hidden_dim, latent_dim, gated),
                         Likelihood(likelihood, data_shape, gaussian_variance), latent_dim)
        if gated:
            he_init(self)


class ConvVAE(VAE):
    """A small convolutional VAE for images whose height and width divide by 4 (28x28, 32x32)."""

    def __init__(self, data_shape, latent_dim: Count = 40, hidden_dim: Count = 300, channels: Count = 32,
                 likelihood: LikelihoodKind = "bernoulli", gaussian_variance: GaussianVariance = "pixel"):
        if len(data_shape) != 3 or data_shape[1] % 4 or data_shape[2] % 4:
            raise UserError(
                f"model=conv needs images shaped (C,H,W) with H and W divisible by 4 (28x28, 32x32); "
                f"this dataset's points have shape {tuple(data_shape)}. Use model=mlp."
            )
        super().__init__(ConvEncoder(data_shape, hidden_dim, latent_dim, channels),
                         ConvDecoder(data_shape, hidden_dim, latent_dim, channels),
                         Likelihood(likelihood, data_shape, gaussian_variance), latent_dim)


class BurgessVAE(VAE):
    """The convolutional beta-VAE of Burgess et al. 2018 (dSprites): 64x64 images (32x32 with one
    convolution fewer each way), 10 latents."""

    SIDES = (32, 64)

    def __init__(self, data_shape, latent_dim: Count = 10, hidden_dim: Count = 256, channels: Count = 32,
                 likelihood: LikelihoodKind = "bernoulli", gaussian_variance: GaussianVariance = "pixel"):
        if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] not in self.SIDES:
            raise UserError(
                f"model=conv64 needs square images of 64x64 or 32x32 pixels, shaped (C,H,W); this dataset's points "
                f"have shape {tuple(data_shape)}. Use dataset=sprites (dataset.size=64 or 32) or dataset=dsprites, "
                "or model=conv (28x28, 32x32) or model=mlp for other images."
            )
        super().__init__(BurgessEncoder(data_shape, hidden_dim, latent_dim, channels),
                         BurgessDecoder(data_shape, hidden_dim, latent_dim, channels),
                         Likelihood(likelihood, data_shape, gaussian_variance), latent_dim)


def repeat_samples(q: DiagonalNormal, samples: int) -> DiagonalNormal:
    """q(z|x) with its batch repeated `samples` times (sample-major), to draw several z per point."""
    if samples == 1:
        return q
    return DiagonalNormal(q.loc.repeat(samples, 1), q.scale.repeat(samples, 1))
