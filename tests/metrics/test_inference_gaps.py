"""The amortization and approximation gaps (Cremer, Li & Duvenaud 2018) against known answers:
linear-Gaussian models whose exact posterior is a diagonal Gaussian (probabilistic PCA with orthogonal
columns), with the encoder exact or deliberately wrong; and linear-Gaussian models whose exact
posterior is a strongly correlated Gaussian, at 4 and 32 latents and three scales, where the best
diagonal Gaussian's ELBO is known exactly and q* must reach it."""

import logging
import math

import pytest
import torch

from tests.metrics.test_diagnostics import ppca_vae
from vaebench.metrics import inference_gaps as gaps
from vaebench.metrics.inference_gaps import elbo_per_point, inference_gaps
from vaebench.metrics.likelihood import log_likelihood_report
from vaebench.models import VAE
from vaebench.models.linear_gaussian import LinearGaussianVAE


def shifted(model, shift: float):
    """The same model with the encoder's means moved by `shift` in every latent dimension."""
    with torch.no_grad():
        model.encoder.head.linear.bias[: model.latent_dim] += shift
    return model


def exact_terms(model, x, marginal_log_px, samples=4000):
    """log p(x) exactly, and the encoder's ELBO per point from many draws."""
    with torch.no_grad():
        return marginal_log_px, elbo_per_point(model, x, model.prior(), samples)


def test_a_wrong_encoder_on_a_diagonal_posterior_has_the_amortization_gap_of_its_kl_and_no_approximation_gap():
    model, x, log_px, _ = ppca_vae()
    x, log_px = x[:60], log_px[:60]
    with torch.no_grad():
        scale = model.encode(x[:1]).scale[0]  # the exact posterior's, the same at every x
    shift = 0.4
    shifted(model, shift)
    # q = N(m + shift, s^2) against the exact posterior N(m, s^2): KL = sum_j shift^2 / (2 s_j^2), every point
    analytic = float((shift**2 / (2 * scale**2)).sum())
    _, elbo_q = exact_terms(model, x, log_px)
    gaps = inference_gaps(model, x, log_px, elbo_q, batch_size=64)
    assert gaps["amortization_gap"] == pytest.approx(analytic, abs=0.02 + 3 * gaps["amortization_gap_se"])
    assert abs(gaps["approximation_gap"]) < 0.02 + 3 * gaps["approximation_gap_se"]
    assert gaps["amortization_gap"] + gaps["approximation_gap"] == pytest.approx(gaps["posterior_kl_of_gap_points"], abs=1e-9)
    assert gaps["inference_gap_points"] == 60


def test_the_exact_encoder_has_neither_gap():
    model, x, log_px, _ = ppca_vae()
    x, log_px = x[:60], log_px[:60]
    _, elbo_q = exact_terms(model, x, log_px)
    gaps = inference_gaps(model, x, log_px, elbo_q, batch_size=64)
    assert abs(gaps["amortization_gap"]) < 0.01 and abs(gaps["approximation_gap"]) < 0.01


def test_a_too_wide_encoder_is_narrowed_to_the_posterior():
    """Scales twice the posterior's: the gap is KL(N(m, 4 s^2) || N(m, s^2)) = k (4 - 1 - log 4) / 2."""
    model, x, log_px, _ = ppca_vae(posterior_widening=2.0)
    x, log_px = x[:60], log_px[:60]
    _, elbo_q = exact_terms(model, x, log_px)
    gaps = inference_gaps(model, x, log_px, elbo_q, batch_size=64)
    analytic = model.latent_dim * (4 - 1 - math.log(4)) / 2
    assert gaps["amortization_gap"] == pytest.approx(analytic, abs=0.03 + 3 * gaps["amortization_gap_se"])


def test_the_optimised_elbo_is_never_below_the_encoders_on_the_two_level_model():
    from vaebench.models.hvae import HVAE
    from vaebench.priors import StandardPrior

    torch.manual_seed(0)
    model = HVAE((12,), latent_dim=3, hidden_dim=16)
    model.prior = StandardPrior(3)
    x = torch.rand(40, 12).bernoulli()
    report = log_likelihood_report(model, x, batch_size=40, iw_samples=500, keep_points=True)["per_point"]
    gaps = inference_gaps(model, x, report["log_likelihood"], report["elbo_iw"], batch_size=40)
    assert gaps["amortization_gap"] > 0.1  # an untrained encoder leaves room
    assert gaps["amortization_gap"] + gaps["approximation_gap"] == pytest.approx(gaps["posterior_kl_of_gap_points"], abs=1e-9)
    assert gaps["approximation_gap"] > -2 * gaps["approximation_gap_se"]


# -- a correlated exact posterior: q* against the best diagonal Gaussian's analytic ELBO ---------------
def shortfall_of_q_star(model: LinearGaussianVAE, **fit) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(q* found || p(z|x)) - KL(best diagonal || p(z|x)) per point, exactly: how far ELBO(q*) falls
    short of the analytic optimum, without Monte-Carlo noise; and the iterations each point took."""
    x, p_z = model.x, model.prior()
    layers = gaps.latent_layers(model, x, p_z)
    params, iterations = gaps.fit_offsets(model, x, p_z, layers, gaps.draws_for(layers), **fit)
    with torch.no_grad():
        q_star = gaps.LocalOffsets(layers, params)("z", model.encode(x))
    return model.kl_to_posterior(x, q_star.loc, q_star.scale) - model.best_diagonal_gap(), iterations


CORRELATED = [(latents, sd, seed) for latents in (4, 32) for seed, sd in enumerate((0.025, 0.13, 1.3))]


@pytest.mark.parametrize("latents,sd,seed", CORRELATED)
def test_q_star_reaches_the_best_diagonal_gaussian_of_a_correlated_posterior_at_any_scale(latents, sd, seed):
    """Posterior correlation strong enough that its normalised precision's condition number is 70-190
    (4 latents) and 950-1,400 (32), with a best approximation gap of 2.3-3.0 and 26-30 nats; the encoder
    starts 40-1,500 nats above it. ELBO(q*) within 0.02 nats of its analytic optimum at >= 95% of the
    points, whatever the posterior's s.d. (0.025 to 1.3)."""
    model = LinearGaussianVAE(latents, sd, points=100, seed=seed)
    with torch.no_grad():
        q = model.encode(model.x)
    assert float(model.kl_to_posterior(model.x, q.loc, q.scale).mean() - model.best_diagonal_gap()) > 10
    shortfall, _ = shortfall_of_q_star(model)
    assert float((shortfall <= 0.02).double().mean()) >= 0.95
    assert float(shortfall.min()) > -1e-6  # nothing beats the optimum: the exact KL is right


def test_the_known_answer_tells_an_optimisation_stopped_short():
    shortfall, iterations = shortfall_of_q_star(LinearGaussianVAE(32, 0.13, points=40), max_iterations=5)
    assert int(iterations.max()) == 5 and float((shortfall <= 0.02).double().mean()) < 0.5


def test_the_gaps_of_a_correlated_posterior_match_their_analytic_values():
    """Through `inference_gaps`, fed the exact log p(x) and the encoder's exact ELBO: the approximation
    gap is the best diagonal Gaussian's, ELBO(q*) coming from fresh draws."""
    model = LinearGaussianVAE(4, 0.025, points=100, seed=3)
    with torch.no_grad():
        q = model.encode(model.x)
    kl_q = model.kl_to_posterior(model.x, q.loc, q.scale)
    result = inference_gaps(model, model.x, model.log_px, model.log_px - kl_q, batch_size=1000)
    best = model.best_diagonal_gap()
    assert result["approximation_gap"] == pytest.approx(best, abs=0.02 + 3 * result["approximation_gap_se"])
    assert result["amortization_gap"] == pytest.approx(float(kl_q.mean()) - best, abs=0.02 + 3 * result["amortization_gap_se"])
    assert result["approximation_gap_se"] < 0.02  # each point's fresh draws: tight enough to tell 0.06 nats


def test_the_fixed_draws_are_antithetic_and_white_for_every_point():
    noise = gaps.matched_noise(points=3, draws=24, dims=5, device="cpu").double()
    assert noise.shape == (24, 3, 5)
    assert torch.allclose(noise.mean(0), torch.zeros(3, 5).double(), atol=1e-6)
    second_moment = torch.einsum("spi,spj->pij", noise, noise) / 24
    assert torch.allclose(second_moment, torch.eye(5).expand(3, 5, 5).double(), atol=1e-5)


def test_the_stage_reports_points_as_they_finish_and_keeps_to_its_budget(caplog):
    model = LinearGaussianVAE(4, 0.13, points=40)
    heard = []
    with torch.no_grad():
        q = model.encode(model.x)
    elbo_q = model.log_px - model.kl_to_posterior(model.x, q.loc, q.scale)
    result = inference_gaps(model, model.x, model.log_px, elbo_q, batch_size=40,
                            progress=lambda stage, done, total: heard.append((done, total)))
    assert heard[0] == (0, 40) and heard[-1] == (40, 40) and len(heard) > 3  # not one jump at the end
    assert [done for done, _ in heard] == sorted(done for done, _ in heard)
    assert result["inference_gap_points"] == 40
    with caplog.at_level(logging.WARNING, logger="vaebench"):
        bounded = inference_gaps(model, model.x, model.log_px, elbo_q, batch_size=10, budget_flop=1.0)
    assert bounded["inference_gap_points"] == 10  # the first batch, then no more
    assert "first 10 of 40 points" in caplog.text and "2.0 times" in caplog.text


def test_a_model_that_adjusts_before_repeating_its_batch_is_told_the_contract():
    class AdjustsFirst(VAE):
        def latents(self, x, p_z, samples=1, adjust=None):
            q = adjust("z", self.encode(x)) if adjust is not None else self.encode(x)
            q = gaps.DiagonalNormal(q.loc.repeat(samples, 1), q.scale.repeat(samples, 1))
            z = q.rsample()
            return z, {"z": (q, p_z, z)}

    known = LinearGaussianVAE(4, 0.13, points=5)
    model = AdjustsFirst(known.encoder, known.decoder, known.likelihood, 4)
    model.prior = known.prior
    with pytest.raises(ValueError, match="repeat the batch before adjust"):
        gaps.optimised_elbo(model, known.x, model.prior())
