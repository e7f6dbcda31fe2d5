"""ELBO surgery, total correlation, active units and the importance-weighted log-likelihood against
closed forms and brute force."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vaebench.distributions import mixture
from vaebench.metrics import diagnostics, likelihood
from vaebench.metrics.likelihood import importance_weighted_log_likelihood
from vaebench.metrics.surgery import active_units, aggregate_log_density, aggregate_marginal_log_density, elbo_surgery
from tests.metrics.test_elbo import PRIORS, tiny_model


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
        results.append(elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob))
    return {k: sum(r[k] for r in results) / draws for k in results[0]}, results


def test_aggregate_densities_match_brute_force(monkeypatch):
    torch.manual_seed(0)
    loc, scale = torch.randn(50, 4), torch.rand(50, 4) + 0.1
    z = torch.randn(30, 4)
    monkeypatch.setattr(mixture, "CPU_BLOCK_ELEMENTS", 200)  # force several blocks
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
    full = elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob)
    subsets = [elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob, tc_points=200) for _ in range(20)]
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
    from vaebench.metrics.evaluation import split_terms

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


# -- exact values: one and two posteriors, sharp ones included ------------------------------------
def surgery_at(loc, scale, draws=8, seed=0):
    torch.manual_seed(seed)
    p = Normal(torch.zeros(loc.shape[1]), torch.ones(loc.shape[1]))
    z = loc + scale * torch.randn(draws, *loc.shape)
    return elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob)


@pytest.mark.parametrize("sharpness", [1.0, 0.01, 1e-4])
def test_one_point_carries_no_information_even_with_a_sharp_posterior(sharpness):
    """N = 1: q(z) is the posterior itself, so I = 0 and TC = 0 exactly (the float32 expansion gave
    I anywhere in [-0.85, 0.84] at scale 0.01)."""
    torch.manual_seed(9)
    loc, scale = 3 * torch.randn(1, 40), torch.full((1, 40), sharpness)
    result = surgery_at(loc, scale)
    assert abs(result["mutual_info"]) < 1e-3 and result["mutual_info_se"] < 1e-3
    assert abs(result["total_correlation"]) < 1e-3
    assert result["mutual_info_max"] == 0.0


@pytest.mark.parametrize("sharpness", [1.0, 0.01, 1e-4])
def test_two_far_apart_posteriors_carry_log_2_nats(sharpness):
    """N = 2, posteriors apart by 20 sd in every dimension: q(z) = q(z|x_n) / 2 at z_n, so I = log 2, and each
    1-D marginal halves too, so TC = log q(z) - sum_j log q(z_j) = (D - 1) log 2."""
    torch.manual_seed(10)
    first = 3 * torch.randn(1, 40)
    loc = torch.cat([first, first + 20 * sharpness])
    result = surgery_at(loc, torch.full((2, 40), sharpness))
    assert result["mutual_info"] == pytest.approx(math.log(2), abs=1e-3)
    assert result["total_correlation"] == pytest.approx(39 * math.log(2), abs=1e-3)
    assert result["mutual_info_max"] == pytest.approx(math.log(2))


def test_surgery_standard_errors_match_the_spread_of_independent_repeats():
    """Each surgery term's _se is its Monte-Carlo error: over 40 independent evaluations (8 draws per point
    each) the estimates scatter by about the reported standard error."""
    torch.manual_seed(11)
    loc, scale = 1.5 * torch.randn(150, 3), 0.3 + 0.4 * torch.rand(150, 3)
    runs = [surgery_at(loc, scale, draws=8, seed=s) for s in range(40)]
    for term in ("mutual_info", "marginal_kl", "total_correlation", "dimwise_kl"):
        spread = float(torch.tensor([r[term] for r in runs]).std())
        reported = sum(r[f"{term}_se"] for r in runs) / len(runs)
        # The sample sd of 40 values is within about +-25% of the truth (2 sd of its own error).
        assert 0.7 < spread / reported < 1.4, term


def test_a_subsets_standard_error_is_the_spread_of_repeated_subset_estimates():
    """The surgery of M of the N points (R draws each), each draw against the exact aggregate of all N:
    over 100 repeats with other points and draws, the estimates scatter by the reported SE (within 20%)
    and centre on the value of every point. The SE counts the draws' noise once: twice, it was 1.3x the
    spread here."""
    n, m, r = 400, 80, 4
    torch.manual_seed(5)
    loc, scale = 1.5 * torch.randn(n, 3), 0.3 + 0.4 * torch.rand(n, 3)
    p = Normal(torch.zeros(3), torch.ones(3))
    runs = []
    for seed in range(100):
        torch.manual_seed(100 + seed)
        points = torch.randperm(n)[:m]
        z = loc[points] + scale[points] * torch.randn(r, m, 3)
        runs.append(elbo_surgery(loc, scale, z, p.log_prob(z).sum(-1), p.log_prob, points=points))
    every_point = surgery_at(loc, scale, draws=64)
    for term in ("mutual_info", "marginal_kl", "total_correlation", "dimwise_kl"):
        estimates = torch.tensor([run[term] for run in runs], dtype=torch.float64)
        reported = sum(run[f"{term}_se"] for run in runs) / len(runs)
        assert abs(float(estimates.std()) / reported - 1) < 0.2, (term, float(estimates.std()), reported)
        assert abs(float(estimates.mean()) - every_point[term]) < 4 * reported / math.sqrt(len(runs)) + 4 * every_point[f"{term}_se"]


def test_a_split_larger_than_surgery_points_is_estimated_on_a_subset_and_a_smaller_one_is_not():
    """split_diagnostics takes a random subset of surgery_points points only where the split has more: a
    split of at most that many gets the very numbers it got before subsets existed."""
    model, _ = tiny_model("mlp", "standard")
    x = torch.rand(300, 1, 8, 8).bernoulli()
    every = diagnostics.split_diagnostics(model, x, 100, surgery_samples=2)
    assert diagnostics.split_diagnostics(model, x, 100, surgery_samples=2, surgery_points=300) == every
    subset = diagnostics.split_diagnostics(model, x, 100, surgery_samples=2, surgery_points=60)
    for term in ("mutual_info", "marginal_kl"):
        assert subset[f"{term}_se"] > every[f"{term}_se"]  # the choice of points counts now
        assert abs(subset[term] - every[term]) < 4 * subset[f"{term}_se"]


# -- the model's own log-likelihood against probabilistic PCA ----------------------------------------
def ppca_vae(d=5, k=2, noise=0.5, posterior_widening=1.0, seed=0, offset=50.0):
    """A `VAE` whose weights make it probabilistic PCA, p(z) = N(0, I), p(x|z) = N(W z + b, noise^2 I), with
    the encoder set to the exact posterior (widened by `posterior_widening`), through the model's own
    MLP encoder, MLP decoder and Gaussian likelihood (global variance). The ReLUs stay in their linear
    regime: each hidden layer adds `offset` and the next layer takes it off again. W has orthogonal
    columns, so the exact posterior is diagonal. Returns the model, data, W and b."""
    from vaebench.models import VAE
    from vaebench.models import Likelihood, MLPDecoder, MLPEncoder
    from vaebench.priors import StandardPrior

    torch.manual_seed(seed)
    w = torch.linalg.qr(torch.randn(d, k))[0] * torch.linspace(2.0, 1.0, k)
    b = 0.5 * torch.randn(d)
    precision = 1 + w.pow(2).sum(0) / noise**2  # the diagonal of I + W^T W / noise^2
    to_mean = (w.T / noise**2) / precision.unsqueeze(1)  # E[z|x] = to_mean @ (x - b)
    encoder, decoder = MLPEncoder((d,), d, k), MLPDecoder((d,), d, k)
    likelihood = Likelihood("gaussian", (d,), "global")
    identity = torch.eye(d)
    with torch.no_grad():
        first, second = encoder.body[1][0], encoder.body[1][2]
        first.weight.copy_(identity), first.bias.fill_(offset)
        second.weight.copy_(identity), second.bias.zero_()  # the body outputs x + offset
        head = encoder.head.linear
        head.weight.zero_(), head.weight[:k].copy_(to_mean)
        head.bias[:k].copy_(-to_mean @ (b + offset))
        wanted_scale = posterior_widening * precision.rsqrt()
        head.bias[k:].copy_(torch.log(torch.expm1(wanted_scale - 1e-4)))  # softplus(raw) + 1e-4
        layers = decoder.net
        layers[0].weight.zero_(), layers[0].weight[:k].copy_(torch.eye(k)), layers[0].bias.fill_(offset)
        layers[2].weight.copy_(identity), layers[2].bias.zero_()
        layers[4].weight.zero_(), layers[4].weight[:, :k].copy_(w)
        layers[4].bias.copy_(b - w.sum(1) * offset)
        likelihood.raw_scale.fill_(math.log(math.expm1(noise - 1e-3)))  # softplus(raw) + 1e-3
    model = VAE(encoder, decoder, likelihood, k)
    model.prior = StandardPrior(k)
    marginal = MultivariateNormal(b, w @ w.T + noise**2 * torch.eye(d))
    x = marginal.sample((400,))
    return model, x, marginal.log_prob(x), wanted_scale / precision.rsqrt()


def test_the_vae_log_likelihood_equals_probabilistic_pca_in_closed_form():
    """With the exact posterior as encoder every importance weight is p(x): log_likelihood is exact and
    posterior_kl is 0, whatever the number of samples; the analytic-KL elbo agrees within its SE."""
    model, x, exact, _ = ppca_vae()
    report = diagnostics.split_report(model, x, batch_size=100, iw_samples=4, surgery_samples=2)
    assert report["log_likelihood"] == pytest.approx(float(exact.mean()), abs=1e-3)
    assert report["log_likelihood_se"] == pytest.approx(float(exact.std()) / math.sqrt(len(x)), rel=1e-3)
    assert abs(report["posterior_kl"]) < 1e-3 and report["posterior_kl_se"] < 1e-3
    assert abs(report["elbo"] - float(exact.mean())) < 4 * report["elbo_se"]
    torch.manual_seed(0)
    log_px, elbo_iw = likelihood.importance_sampling_terms(
        lambda block, s: model.log_importance_weights(block, model.prior(), s), x, samples=3)
    assert torch.allclose(log_px, exact, atol=1e-3) and torch.allclose(elbo_iw, exact, atol=1e-3)


def test_posterior_kl_is_the_kl_between_the_encoder_and_the_exact_posterior():
    """An encoder 1.5 times too wide: KL(q || p(z|x)) = sum_j (f^2 - 1 - 2 log f) / 2 per point, f = 1.5."""
    model, x, exact, widening = ppca_vae(posterior_widening=1.5)
    expected = float((0.5 * (widening.pow(2) - 1 - 2 * widening.log())).sum())
    report = diagnostics.split_report(model, x, batch_size=100, iw_samples=2000)
    # 2,000 samples from a wider proposal: the log-likelihood's bias is ~1e-4 nats, far under the tolerance.
    assert report["posterior_kl"] == pytest.approx(expected, abs=4 * report["posterior_kl_se"] + 5e-3)
    assert report["log_likelihood"] == pytest.approx(float(exact.mean()), abs=5e-3)
    assert report["posterior_kl"] == pytest.approx(report["log_likelihood"] - report["elbo_iw"], abs=1e-6)


# -- the two-level model: each layer's KL, and the surgery of z2 -----------------------------------
def test_hvae_layer_kls_in_closed_form_and_kl_z2_is_mutual_info_plus_marginal_kl():
    from vaebench.metrics.evaluation import split_terms
    from vaebench.models import HVAE
    from vaebench.priors import StandardPrior

    torch.manual_seed(12)
    model = HVAE((1, 4, 4), hidden_dim=16, latent_dim=2, likelihood="bernoulli")
    model.prior = StandardPrior(2)
    q_loc, q_scale, p_loc, p_scale = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 0.8]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])
    with torch.no_grad():
        for p in model.encoder.parameters():  # informative codes for z2
            p.mul_(3)
        # q(z1|x,z2) and p(z1|z2) constant: their KL is one closed-form number per point.
        for head, loc, scale in ((model.q_z1_head[2].linear, q_loc, q_scale), (model.p_z1[2].linear, p_loc, p_scale)):
            head.weight.zero_()
            head.bias.copy_(torch.cat([loc, torch.log(torch.expm1(scale - 1e-4))]))
    x = torch.rand(400, 1, 4, 4).bernoulli()
    terms = split_terms(model, x, 1000)
    kl_z1 = kl_divergence(Independent(Normal(q_loc, q_scale), 1), Independent(Normal(p_loc, p_scale), 1))
    assert float(terms["kl_z1"]) == pytest.approx(float(kl_z1), abs=1e-4)
    with torch.no_grad():
        q = model.encode(x)
    kl_z2 = (0.5 * (q.loc.pow(2) + q.scale.pow(2) - 1) - q.scale.log()).sum(-1)
    assert float(terms["kl_z2"]) == pytest.approx(float(kl_z2.mean()), abs=1e-4)
    assert float(terms["kl_z2_se"]) == pytest.approx(float(kl_z2.std()) / math.sqrt(len(x)), rel=1e-3)
    diag = diagnostics.split_diagnostics(model, x, 1000, surgery_samples=32)
    tolerance = 4 * (diag["mutual_info_se"] + diag["marginal_kl_se"])
    assert diag["mutual_info"] + diag["marginal_kl"] == pytest.approx(float(terms["kl_z2"]), abs=tolerance)
    assert tolerance < 0.2  # the check has teeth


def test_a_stopped_log_likelihood_goes_on_to_the_numbers_of_one_that_never_stopped(monkeypatch):
    vae, _ = tiny_model("mlp", "vamp")
    x = torch.rand(40, 1, 8, 8).bernoulli()
    monkeypatch.setattr(likelihood, "pairs_per_call", lambda x: 300)  # blocks of 10 points of 30 samples
    partials = []
    straight = likelihood.log_likelihood_report(vae, x, 1, iw_samples=30, on_block=partials.append)
    assert [len(p["log_px"]) for p in partials] == [10, 20, 30, 40]

    torch.manual_seed(99)  # whatever the global stream did meanwhile
    resumed = likelihood.log_likelihood_report(vae, x, 1, iw_samples=30, done=partials[2])
    assert resumed == straight
    # The stream went on: the last block's samples are not the first block's again.
    restarted = likelihood.log_likelihood_report(vae, x, 1, iw_samples=30,
                                                  done={**partials[2], "random_state": partials[0]["random_state"]})
    assert restarted["log_likelihood"] != straight["log_likelihood"]
