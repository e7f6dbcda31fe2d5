"""Models p(x|z) p(z) with their encoders q(z|x), as conf/model/ has one file per model; the nets they
are built from. A model of your own subclasses `VAE` with an encoder and a decoder from here (or your
own) and a `Likelihood`; a config entry names it by its class (`_target_: vaebench.models.MLPVAE`).

- vae.py: `LatentVariableModel` (what every model shares), `VAE` (one latent layer), and the VAEs the
  config ships: `MLPVAE` (the VampPrior paper's), `ConvVAE`, `BurgessVAE` (64x64, Burgess et al. 2018).
- hvae.py: `HVAE`, the two-level model of the VampPrior paper.
- nets.py: encoders (returning q(z|x)), decoders, the `Likelihood` heads; the paper's gated layers
  (`GatedDense`), its bounded log-variance head and its He initialisation, for `model.gated=true`.
- linear_gaussian.py: `LinearGaussianVAE`, a model whose exact posterior is a known correlated
  Gaussian: the known answer that the inference gaps are checked against (not a config choice).
"""

from vaebench.models.hvae import HVAE
from vaebench.models.nets import (BurgessDecoder, BurgessEncoder, ConvDecoder, ConvEncoder, GatedDense, GaussianHead,
                                  Likelihood, LogVarianceHead, MLPDecoder, MLPEncoder, diagonal_gaussian, he_init, mlp)
from vaebench.models.vae import VAE, BurgessVAE, ConvVAE, LatentVariableModel, MLPVAE, repeat_samples

__all__ = ["BurgessDecoder", "BurgessEncoder", "BurgessVAE", "ConvDecoder", "ConvEncoder", "ConvVAE", "GatedDense",
           "GaussianHead", "HVAE", "LatentVariableModel", "Likelihood", "LogVarianceHead", "MLPDecoder", "MLPEncoder",
           "MLPVAE", "VAE", "diagonal_gaussian", "he_init", "mlp", "repeat_samples"]
