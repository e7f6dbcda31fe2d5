"""The amortization and approximation gaps (Cremer, Li & Duvenaud 2018) against known answers: a
linear-Gaussian model whose exact posterior is a diagonal Gaussian (probabilistic PCA with orthogonal
columns), with its encoder exact or deliberately wrong."""

import math

import pytest
import torch

from tests.metrics.test_diagnostics import ppca_vae
from vaebench.metrics.inference_gaps import elbo_per_point, inference_gaps
from vaebench.metrics.likelihood import log_likelihood_report


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
