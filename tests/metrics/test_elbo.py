"""The ELBO identities of ELBO.md, for every model and prior, within Monte-Carlo error."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributions import Independent, Normal, StudentT, kl_divergence

from vaebench.metrics import elbo
from vaebench.config.components import build_model

PRIORS = {
    "standard": {"_target_": "vaebench.priors.StandardPrior", "sigma": 1.0},
    "mog": {"_target_": "vaebench.priors.MixturePrior", "K": 3},
    "vamp": {"_target_": "vaebench.priors.VampPrior", "K": 3, "init": "random", "learn_weights": False},
    "aggregate": {"_target_": "vaebench.priors.AggregatePosteriorPrior", "chunk_size": 7},
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


# -- per-dimension KL for any prior with 1-D marginals; none for one without ------------------------
class FixedPrior(torch.nn.Module):
    """A user's prior: a module returning a fixed distribution."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def forward(self):
        return self.make()


class OnlyLogProbAndSample(torch.distributions.Distribution):
    """A prior that offers log_prob and sample and nothing else (no 1-D marginals, no analytic KL)."""

    def __init__(self, dim: int):
        self.inner = Independent(StudentT(4.0, torch.zeros(dim), torch.ones(dim)), 1)
        super().__init__(event_shape=torch.Size([dim]), validate_args=False)

    def log_prob(self, z):
        return self.inner.log_prob(z)

    def sample(self, sample_shape=torch.Size()):
        return self.inner.sample(sample_shape)


def user_prior_vae(make_prior):
    from vaebench.models import VAE
    from vaebench.models import Likelihood, MLPDecoder, MLPEncoder

    torch.manual_seed(13)
    shape = (1, 4, 4)
    model = VAE(MLPEncoder(shape, 16, 3), MLPDecoder(shape, 16, 3), Likelihood("bernoulli", shape), 3)
    model.prior = FixedPrior(make_prior)
    return model, torch.rand(200, *shape).bernoulli()


def normal_laplace_kl(m, s, b):
    """KL(N(m, s^2) || Laplace(0, b)) = E|z| / b + log(2 b) - H[N(m, s^2)], E|z| of the folded normal."""
    folded_mean = s * math.sqrt(2 / math.pi) * torch.exp(-m**2 / (2 * s**2)) + m * (1 - 2 * Normal(0.0, 1.0).cdf(-m / s))
    return folded_mean / b + math.log(2 * b) - (0.5 * math.log(2 * math.pi * math.e) + s.log())


def test_kl_per_dim_is_analytic_for_a_gaussian_prior_and_sums_to_the_kl():
    torch.manual_seed(14)
    q = Independent(Normal(torch.randn(6, 3), torch.rand(6, 3) + 0.2), 1)
    p = Independent(Normal(torch.zeros(3), 2 * torch.ones(3)), 1)
    per_dim = elbo.kl_per_dim(q, p, q.sample())
    closed = (q.base_dist.scale / 2).pow(2) / 2 + q.base_dist.loc.pow(2) / 8 - 0.5 - (q.base_dist.scale / 2).log()
    assert torch.allclose(per_dim, closed, atol=1e-6)
    assert torch.allclose(per_dim.sum(-1), kl_divergence(q, p), atol=1e-5)


def test_kl_per_dim_for_a_laplace_prior_estimates_its_closed_form():
    """Independent(Laplace): one-sample Monte-Carlo against the prior's own 1-D log-densities, unbiased."""
    torch.manual_seed(15)
    m, s, b = torch.tensor([0.0, 1.5, -3.0]), torch.tensor([0.5, 1.0, 0.2]), 0.7
    q = Independent(Normal(m.expand(20000, 3), s.expand(20000, 3)), 1)
    p = Independent(torch.distributions.Laplace(torch.zeros(3), torch.full((3,), b)), 1)
    per_dim = elbo.kl_per_dim(q, p, q.sample())
    expected = normal_laplace_kl(m, s, b)
    for j in range(3):
        assert within_mc_error(per_dim[:, j] - expected[j])


def test_a_user_laplace_prior_gets_dimwise_kl_and_a_log_prob_only_prior_gets_the_rest():
    from vaebench.metrics.diagnostics import split_diagnostics, split_report
    from vaebench.metrics.evaluation import split_terms

    laplace, x = user_prior_vae(lambda: Independent(torch.distributions.Laplace(torch.zeros(3), torch.ones(3)), 1))
    diag = split_diagnostics(laplace, x, 100, surgery_samples=2)
    assert "dimwise_kl" in diag and "dimwise_kl_se" in diag
    assert diag["total_correlation"] + diag["dimwise_kl"] == pytest.approx(diag["marginal_kl"], abs=1e-3)  # factorised
    assert split_terms(laplace, x, 100)["kl_per_dim"].shape == (3,)

    plain, x = user_prior_vae(lambda: OnlyLogProbAndSample(3))
    assert elbo.kl_per_dim(plain.encode(x), plain.prior(), plain.encode(x).sample()) is None
    report = split_report(plain, x, 100, iw_samples=4, surgery_samples=2)
    assert "dimwise_kl" not in report and "kl_per_dim" not in split_terms(plain, x, 100)
    for term in ("elbo", "kl", "mutual_info", "marginal_kl", "total_correlation", "log_likelihood", "posterior_kl"):
        assert math.isfinite(report[term]) and math.isfinite(report[f"{term}_se"]), term
    assert plain.sample(3).shape == (3, 1, 4, 4)


def test_a_mixture_priors_per_dimension_kl_scores_only_the_splits_first_points(monkeypatch):
    """Its 1-D marginals cost K components per coordinate (K = N for the aggregate posterior): the
    per-dimension KL is the mean over the first MIXTURE_KL_PER_DIM_POINTS points, in whole batches,
    the same estimate as over those points alone; the other terms still average every point."""
    from vaebench.metrics import evaluation as evaluate
    from vaebench.distributions import DiagonalGaussianMixture

    monkeypatch.setattr(evaluate, "MIXTURE_KL_PER_DIM_POINTS", 50)
    scored = []
    marginal_log_prob = DiagonalGaussianMixture.marginal_log_prob
    monkeypatch.setattr(DiagonalGaussianMixture, "marginal_log_prob",
                        lambda self, z: scored.append(len(z)) or marginal_log_prob(self, z))
    vamp, _ = tiny_model("mlp", "vamp")
    x = torch.rand(200, 1, 8, 8).bernoulli()
    terms = evaluate.split_terms(vamp, x, 20)
    assert sum(scored) == 60  # three batches of 20 reach the 50th point
    first = evaluate.split_terms(vamp, x[:60], 20)
    assert torch.allclose(terms["kl_per_dim"], first["kl_per_dim"])
    assert not torch.allclose(terms["kl"], first["kl"])  # the whole split's
    standard, _ = tiny_model("mlp", "standard")  # closed form: every point, at no cost
    standard_terms = evaluate.split_terms(standard, x, 20)
    assert torch.allclose(standard_terms["kl_per_dim"].sum(), standard_terms["kl"], atol=1e-5)


# -- bits per dimension -----------------------------------------------------------------------------
def test_bits_per_dim_of_a_density_are_those_of_the_8_bit_data():
    """Gaussian likelihood: the density times the bin width 1/256 per dimension; Bernoulli: as it is."""
    from vaebench.metrics.evaluation import split_terms

    gaussian, data = tiny_model("mlp", "standard", likelihood="gaussian")
    terms = split_terms(gaussian, data, 100)
    dims = 64
    assert float(terms["elbo_bits_per_dim"]) == pytest.approx((-float(terms["elbo"]) + dims * math.log(256)) / (dims * math.log(2)), rel=1e-6)
    bernoulli, data = tiny_model("mlp", "standard")
    terms = split_terms(bernoulli, data, 100)
    assert float(terms["elbo_bits_per_dim"]) == pytest.approx(-float(terms["elbo"]) / (dims * math.log(2)), rel=1e-6)
    assert elbo.bits_per_dim(-10.0, 5, levels=256) == pytest.approx((-10 + 5 * math.log(256)) / (5 * math.log(2)))
    assert elbo.bits_per_dim(8 * math.log(2), 1) == pytest.approx(8.0)  # 8 bits: one of 256 equally likely values
