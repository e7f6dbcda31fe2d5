"""The ELBO identities of ELBO.md, for every model and prior, within Monte-Carlo error."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributions import Independent, Normal, StudentT, kl_divergence

from vaebench import elbo
from vaebench.components import build_model

PRIORS = {
    "standard": {"_target_": "vaebench.priors.StandardPrior", "sigma": 1.0},
    "mog": {"_target_": "vaebench.priors.MixturePrior", "K": 3},
    "vamp": {"_target_": "vaebench.priors.VampPrior", "K": 3, "init": "random", "learn_weights": False},
}
MODELS = {"mlp": "vaebench.models.MLPVAE", "conv": "vaebench.models.ConvVAE", "hvae": "vaebench.models.HVAE"}


def tiny_model(model: str, prior: str, shape=(1, 8, 8), likelihood="bernoulli"):
    torch.manual_seed(0)
    cfg = OmegaConf.create({
        "model": {"_target_": MODELS[model], "latent_dim": 3, "hidden_dim": 16,
                  "likelihood": likelihood, "gaussian_variance": "pixel", **({"channels": 4} if model == "conv" else {})},
        "prior": PRIORS[prior],
    })
    data = torch.rand(20, *shape).bernoulli()
    return build_model(cfg, shape, data), data


def within_mc_error(difference: torch.Tensor, sigmas: float = 4.0) -> bool:
    """The mean of `difference` (one value per independent draw) is zero within `sigmas` standard errors."""
    standard_error = difference.std() / math.sqrt(len(difference))
    return abs(float(difference.mean())) <= sigmas * float(standard_error) + 1e-4


@pytest.mark.parametrize("model", ["mlp", "conv", "hvae"])
@pytest.mark.parametrize("prior", list(PRIORS))
def test_elbo_is_reconstruction_minus_kl_and_log_joint_plus_entropy(model, prior):
    vae, data = tiny_model(model, prior)
    x = data[:4].repeat(500, 1, 1, 1)  # many independent samples of q(z|x) for four points
    with torch.no_grad():
        terms = vae.terms(x)
    assert torch.allclose(terms["elbo"], terms["reconstruction"] - terms["kl"])
    assert within_mc_error(terms["elbo"] - (terms["log_joint"] + terms["entropy"]))
    if model == "hvae":
        assert torch.allclose(terms["kl"], terms["kl_z1"] + terms["kl_z2"])
    assert set(terms) >= {"elbo", "reconstruction", "kl", "log_joint", "entropy"}


def test_analytic_kl_equals_monte_carlo_kl():
    torch.manual_seed(1)
    q = Independent(Normal(torch.randn(5, 4), torch.rand(5, 4) + 0.3), 1)
    p = Independent(Normal(torch.zeros(4), 1.5 * torch.ones(4)), 1)
    z = q.sample((20000,))
    monte_carlo = q.log_prob(z) - p.log_prob(z)  # (samples, points)
    analytic = elbo.kl_q_p(q, p, z[0])
    assert torch.allclose(analytic, kl_divergence(q, p))
    for point in range(5):
        assert within_mc_error(monte_carlo[:, point] - analytic[point])


def test_kl_falls_back_to_monte_carlo_for_a_mixture_prior():
    vae, data = tiny_model("mlp", "mog")
    q = vae.encode(data)
    z = q.rsample()
    p = vae.prior()
    assert torch.allclose(elbo.kl_q_p(q, p, z), q.log_prob(z) - p.log_prob(z))


def test_beta_loss_weights_only_the_kl():
    terms = {"reconstruction": torch.tensor([-10.0, -20.0]), "kl": torch.tensor([2.0, 3.0])}
    assert torch.equal(elbo.beta_loss(terms, 4.0), torch.tensor([18.0, 32.0]))
    assert torch.equal(elbo.beta_loss(terms, 1.0), -(terms["reconstruction"] - terms["kl"]))


def test_warmup_rises_linearly_to_beta():
    assert elbo.warmup_beta(4.0, 0.0, 10) == 0.0
    assert elbo.warmup_beta(4.0, 5.0, 10) == pytest.approx(2.0)
    assert elbo.warmup_beta(4.0, 25.0, 10) == 4.0
    assert elbo.warmup_beta(4.0, 0.0, 0) == 4.0


@pytest.mark.parametrize("model", ["mlp", "hvae"])
def test_importance_weights_average_to_the_elbo(model):
    """E_q[log p(x,z) - log q(z|x)] is the ELBO: the weights and the terms agree."""
    vae, data = tiny_model(model, "standard")
    x = data[:3]
    with torch.no_grad():
        log_w = vae.log_importance_weights(x, vae.prior(), samples=4000)  # (S, 3)
        reference = vae.terms(x.repeat(4000, 1, 1, 1))["elbo"].view(4000, 3)
    for point in range(3):
        assert within_mc_error(log_w[:, point] - reference[:, point])


def test_gaussian_likelihood_terms_hold():
    vae, data = tiny_model("mlp", "standard", likelihood="gaussian")
    with torch.no_grad():
        terms = vae.terms(data.repeat(200, 1, 1, 1))
    assert within_mc_error(terms["elbo"] - (terms["log_joint"] + terms["entropy"]))



def test_the_analytic_kl_cache_tells_wrapped_distributions_apart():
    """A prior without an analytic KL must not make a later Independent(Normal) prior Monte-Carlo."""
    torch.manual_seed(2)
    q = Independent(Normal(torch.randn(5, 3), torch.rand(5, 3) + 0.3), 1)
    z = q.sample()
    heavy_tailed = Independent(StudentT(3.0, torch.zeros(3), torch.ones(3)), 1)  # no analytic KL from a Normal
    assert torch.allclose(elbo.kl_q_p(q, heavy_tailed, z), q.log_prob(z) - heavy_tailed.log_prob(z))
    gaussian = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    assert torch.equal(elbo.kl_q_p(q, gaussian, z), kl_divergence(q, gaussian))
