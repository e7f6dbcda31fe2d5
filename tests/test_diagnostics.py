"""ELBO surgery, total correlation, active units and the importance-weighted log-likelihood against
closed forms and brute force."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vaebench import diagnostics
from vaebench.diagnostics import (
    active_units,
    aggregate_log_density,
    aggregate_marginal_log_density,
    elbo_surgery,
    importance_weighted_log_likelihood,
)
from tests.test_elbo import PRIORS, tiny_model


def brute_force_aggregate(z, loc, scale):
    pairwise = Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(z.unsqueeze(1))  # (M, N, D)
    return torch.logsumexp(pairwise.sum(-1), 1) - math.log(len(loc)), torch.logsumexp(pairwise, 1) - math.log(len(loc))


def standard_surgery(loc, scale, draws=1, seed=0):
    """Surgery terms averaged over `draws` independent samples, against N(0, I)."""
    torch.manual_seed(seed)
    p = Normal(torch.zeros(loc.shape[1]), torch.ones(loc.shape[1]))
    results = []
    for _ in range(draws):
        z = loc + scale * torch.randn_like(loc)
        results.append(elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob(z)))
    return {k: sum(r[k] for r in results) / draws for k in results[0]}, results


def test_aggregate_densities_match_brute_force(monkeypatch):
    torch.manual_seed(0)
    loc, scale = torch.randn(50, 4), torch.rand(50, 4) + 0.1
    z = torch.randn(30, 4)
    monkeypatch.setattr(diagnostics, "PAIRWISE_BUDGET", 200)  # force several chunks
    joint, marginal = brute_force_aggregate(z, loc, scale)
    assert torch.allclose(aggregate_log_density(z, loc, scale), joint, atol=1e-3)
    assert torch.allclose(aggregate_marginal_log_density(z, loc, scale), marginal, atol=1e-4)


def test_surgery_identity_against_the_analytic_kl():
    """avg KL(q(z|x_n) || p) = I(n;z) + KL(q(z) || p), the left side in closed form."""
    torch.manual_seed(1)
    loc, scale = 1.5 * torch.randn(200, 3), 0.3 + 0.5 * torch.rand(200, 3)
    analytic_kl = kl_divergence(Independent(Normal(loc, scale), 1), Independent(Normal(0.0, torch.ones(3)), 1)).mean()
    mean, draws = standard_surgery(loc, scale, draws=30)
    sums = torch.tensor([r["mutual_info"] + r["marginal_kl"] for r in draws])
    assert abs(mean["mutual_info"] + mean["marginal_kl"] - float(analytic_kl)) < 4 * float(sums.std()) / math.sqrt(30) + 1e-3
    assert 0 <= mean["mutual_info"] <= mean["mutual_info_max"] == pytest.approx(math.log(200))


def test_two_distant_posteriors_carry_log_2_nats_in_closed_form():
    """q(z|x_1) = N(-10, 1), q(z|x_2) = N(10, 1): I = log 2 and KL(q(z) || N(0, 1)) in closed form."""
    loc, scale = torch.tensor([[-10.0], [10.0]]), torch.ones(2, 1)
    mean, _ = standard_surgery(loc.repeat(1000, 1), scale.repeat(1000, 1), draws=1)
    entropy_of_mixture = 0.5 * math.log(2 * math.pi * math.e) + math.log(2)
    expected_log_p = -0.5 * math.log(2 * math.pi) - (100 + 1) / 2
    assert mean["mutual_info"] == pytest.approx(math.log(2), abs=1e-4)
    assert mean["marginal_kl"] == pytest.approx(-entropy_of_mixture - expected_log_p, rel=0.01)


def test_an_encoder_that_ignores_x_carries_no_information():
    loc, scale = torch.full((300, 2), 0.7), torch.full((300, 2), 0.4)
    mean, _ = standard_surgery(loc, scale)
    kl_one = kl_divergence(Normal(0.7, 0.4), Normal(0.0, 1.0)) * 2
    assert abs(mean["mutual_info"]) < 1e-4
    assert mean["marginal_kl"] == pytest.approx(float(kl_one), abs=0.1)  # q(z) is the one posterior
    assert abs(mean["total_correlation"]) < 1e-4


def test_total_correlation_and_dimwise_kl_sum_to_marginal_kl():
    torch.manual_seed(2)
    line = torch.randn(400, 1)
    correlated = torch.cat([line, line + 0.05 * torch.randn(400, 1)], 1) * 2
    mean, draws = standard_surgery(correlated, torch.full((400, 2), 0.1), draws=5)
    for r in draws:
        assert r["total_correlation"] + r["dimwise_kl"] == pytest.approx(r["marginal_kl"], abs=1e-3)
    assert mean["total_correlation"] > 1.0  # two copies of one code are strongly dependent


def test_total_correlation_is_not_negative_for_independent_codes():
    torch.manual_seed(3)
    mean, draws = standard_surgery(torch.randn(500, 3), torch.full((500, 3), 0.5), draws=10)
    tc = torch.tensor([r["total_correlation"] for r in draws])
    assert float(tc.mean()) > -4 * float(tc.std()) / math.sqrt(10)


def test_total_correlation_on_a_subset_of_points_estimates_the_full_split_value():
    torch.manual_seed(4)
    line = torch.randn(600, 1)
    loc, scale = torch.cat([line, line + 0.3 * torch.randn(600, 1)], 1), torch.full((600, 2), 0.2)
    z = loc + scale * torch.randn_like(loc)
    p = Normal(torch.zeros(2), torch.ones(2))
    full = elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob(z))
    subsets = [elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob(z), tc_points=200) for _ in range(20)]
    tc = torch.tensor([r["total_correlation"] for r in subsets])
    assert abs(float(tc.mean()) - full["total_correlation"]) < 4 * float(tc.std()) / math.sqrt(20) + 1e-3
    assert all(r["marginal_kl"] == full["marginal_kl"] for r in subsets)  # the joint terms use every point


def test_active_units_counts_dimensions_whose_means_vary():
    loc = torch.cat([torch.randn(100, 2), torch.full((100, 3), 0.2) + 0.001 * torch.randn(100, 3)], 1)
    assert active_units(loc) == 2


def ppca(seed=0, d=4, k=2):
    """x = W z + b + noise: log p(x) = N(x; b, W W^T + s^2 I) exactly, and the posterior is Gaussian."""
    torch.manual_seed(seed)
    w, b, noise = torch.randn(d, k), torch.randn(d), 0.5
    marginal = MultivariateNormal(b, w @ w.T + noise**2 * torch.eye(d))
    x = marginal.sample((40,))

    def log_weights(block, s):
        # A deliberately imperfect proposal: the posterior mean, but too wide.
        precision = torch.eye(k) + w.T @ w / noise**2
        cov = torch.linalg.inv(precision)
        mean = (block - b) @ w @ cov.T / noise**2
        q = Independent(Normal(mean, 1.5 * cov.diagonal().sqrt()), 1)
        z = q.sample((s,))
        log_joint = Independent(Normal(z @ w.T + b, noise), 1).log_prob(block) + Independent(Normal(0.0, torch.ones(k)), 1).log_prob(z)
        return log_joint - q.log_prob(z)

    return x, marginal.log_prob(x), log_weights


def test_importance_weighted_log_likelihood_converges_to_the_exact_ppca_value():
    x, exact, log_weights = ppca()
    torch.manual_seed(0)
    estimate = importance_weighted_log_likelihood(log_weights, x, samples=5000, max_rows=3000)
    assert estimate.shape == exact.shape
    assert torch.allclose(estimate, exact, atol=0.06)  # a lost Gaussian constant would be ~0.9 nats per dimension
    assert abs(float((estimate - exact).mean())) < 0.01


def test_importance_weighted_bound_grows_with_the_number_of_samples():
    x, exact, log_weights = ppca(seed=1)
    torch.manual_seed(0)
    bounds = [float(importance_weighted_log_likelihood(log_weights, x, samples=s).mean()) for s in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2] <= float(exact.mean()) + 0.01


@pytest.mark.parametrize("prior", list(PRIORS))
def test_split_diagnostics_surgery_identity_for_every_prior(prior):
    """The model-level path: kl of the ELBO terms = mutual_info + marginal_kl, within MC error."""
    vae, _ = tiny_model("mlp", prior)
    torch.manual_seed(7)
    for p in vae.encoder.parameters():  # make the codes informative
        p.data.mul_(3)
    x = torch.rand(300, 1, 8, 8).bernoulli()
    from vaebench.evaluate import split_terms

    kl = float(split_terms(vae, x.repeat(20, 1, 1, 1), 1000)["kl"])
    diag = diagnostics.split_diagnostics(vae, x, 1000, iw_samples=50)
    assert diag["mutual_info"] + diag["marginal_kl"] == pytest.approx(kl, abs=0.05 * max(1.0, kl))
    assert -4 * diag["mutual_info_se"] <= diag["mutual_info"] <= math.log(300) + 1e-6
    assert diag["log_likelihood"] >= float(split_terms(vae, x, 1000)["elbo"]) - 0.5
    # Every prior here has 1-D marginals (the mixtures through marginal_log_prob), so dimwise_kl is there;
    # marginal_kl = TC + dimwise_kl holds for a factorised prior only (a mixture's coordinates depend).
    assert "dimwise_kl" in diag
    if prior == "standard":
        assert diag["total_correlation"] + diag["dimwise_kl"] == pytest.approx(diag["marginal_kl"], abs=1e-3)
