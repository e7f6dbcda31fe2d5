"""The lean distribution classes agree with torch.distributions: values, gradients and KLs."""

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vaebench.distributions import DiagonalNormal, IndependentBernoulli


def gradients(value: torch.Tensor, *inputs: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value.sum(), inputs, materialize_grads=True))  # unused: zeros


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "grey"])
def test_bernoulli_log_prob_and_gradient_match_the_library(binary):
    torch.manual_seed(0)
    logits = torch.cat([30 * torch.randn(4, 25), torch.randn(4, 25)]).view(8, 1, 5, 5).requires_grad_()
    x = torch.rand(8, 1, 5, 5)
    x = x.bernoulli() if binary else x  # grey values: the cross-entropy the Bernoulli formula gives
    ours = IndependentBernoulli(logits, 3).log_prob(x)
    library = Independent(Bernoulli(logits=logits, validate_args=False), 3).log_prob(x)
    assert ours.shape == (8,)
    torch.testing.assert_close(ours, library, rtol=0, atol=1e-5 * 25)  # 25 pixels, each within float rounding
    torch.testing.assert_close(gradients(ours, logits), gradients(library, logits))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "grey"])
@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "no_grad"])
def test_bernoulli_scores_each_point_at_its_draws_as_the_library_scores_them_repeated(binary, with_grad):
    """Importance sampling's form: 3 points at 4 draws each (sample-major), the points not repeated."""
    torch.manual_seed(0)
    logits = torch.cat([30 * torch.randn(6, 25), torch.randn(6, 25)]).view(12, 1, 5, 5).requires_grad_(with_grad)
    x = torch.rand(3, 1, 5, 5)
    x = x.bernoulli() if binary else x
    with torch.set_grad_enabled(with_grad):
        ours = IndependentBernoulli(logits, 3).log_prob(x)
    library = Independent(Bernoulli(logits=logits, validate_args=False), 3).log_prob(x.repeat(4, 1, 1, 1))
    assert ours.shape == (12,)
    torch.testing.assert_close(ours, library, rtol=0, atol=1e-5 * 25)
    if with_grad:
        torch.testing.assert_close(gradients(ours, logits), gradients(library, logits))


def test_bernoulli_scored_at_draws_stays_finite_at_extreme_logits():
    logits = torch.tensor([[-1e4, 1e4, -100.0, 100.0], [1e4, -1e4, 100.0, -100.0]])
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(IndependentBernoulli(logits, 1).log_prob(x), torch.tensor([-2e4, -200.0]))


def test_bernoulli_log_prob_stays_finite_at_extreme_logits():
    logits = torch.tensor([[-1e4, 1e4, -100.0, 100.0]])
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    log_p = IndependentBernoulli(logits, 1).log_prob(x)
    torch.testing.assert_close(log_p, torch.tensor([-2e4]))


def test_diagonal_normal_matches_independent_normal():
    torch.manual_seed(0)
    loc, scale = torch.randn(6, 3, requires_grad=True), (torch.rand(6, 3) + 0.1).requires_grad_()
    ours, library = DiagonalNormal(loc, scale), Independent(Normal(loc, scale), 1)
    z = library.sample((2,))
    torch.testing.assert_close(ours.log_prob(z), library.log_prob(z))
    torch.testing.assert_close(ours.entropy(), library.entropy())
    torch.testing.assert_close(gradients(ours.log_prob(z) + ours.entropy(), loc, scale),
                               gradients(library.log_prob(z) + library.entropy(), loc, scale))
    other_loc, other_scale = torch.randn(3), torch.rand(3) + 0.5
    torch.testing.assert_close(kl_divergence(ours, DiagonalNormal(other_loc, other_scale)),
                               kl_divergence(library, Independent(Normal(other_loc, other_scale), 1)))


def test_diagonal_normal_rsample_is_reparameterised_and_has_the_right_moments():
    loc, scale = torch.tensor([1.0, -2.0], requires_grad=True), torch.tensor([0.5, 3.0], requires_grad=True)
    z = DiagonalNormal(loc, scale).rsample((200_000,))
    assert z.shape == (200_000, 2)
    torch.testing.assert_close(z.mean(0), loc.detach(), atol=5 * 3.0 / 200_000 ** 0.5, rtol=0)
    torch.testing.assert_close(z.std(0), scale.detach(), rtol=0.01, atol=0)
    d_loc, d_scale = gradients(z.mean(0), loc, scale)
    torch.testing.assert_close(d_loc, torch.ones(2))  # dz/dloc = 1 for every sample


def test_diagonal_normal_log_prob_at_its_own_sample_has_the_general_value_and_gradient():
    torch.manual_seed(1)
    loc, scale = torch.randn(5, 3, requires_grad=True), (torch.rand(5, 3) + 0.2).requires_grad_()
    q = DiagonalNormal(loc, scale)
    z = q.rsample()
    at_own_sample = q.log_prob(z)                   # reuses the noise
    general = q.log_prob(z.clone())                 # a different tensor: the general formula
    torch.testing.assert_close(at_own_sample, general)
    torch.testing.assert_close(gradients(at_own_sample, loc, scale), gradients(general, loc, scale))


@pytest.mark.parametrize("sigma", [1.0, 0.3])
def test_isotropic_normal_log_prob_and_kl_match_the_library(sigma):
    from vaebench.distributions import IsotropicNormal

    torch.manual_seed(2)
    loc, scale = torch.randn(6, 4, requires_grad=True), (torch.rand(6, 4) + 0.1).requires_grad_()
    ours = IsotropicNormal(torch.zeros(4), torch.full((4,), sigma), sigma)
    library = Independent(Normal(torch.zeros(4), torch.full((4,), sigma)), 1)
    z = torch.randn(6, 4)
    torch.testing.assert_close(ours.log_prob(z), library.log_prob(z))
    ours_kl = kl_divergence(DiagonalNormal(loc, scale), ours)
    library_kl = kl_divergence(Independent(Normal(loc, scale), 1), library)
    torch.testing.assert_close(ours_kl, library_kl)
    torch.testing.assert_close(gradients(ours_kl, loc, scale), gradients(library_kl, loc, scale))


def test_the_lean_classes_still_answer_as_their_library_counterparts():
    """base_dist, mean, variance and shapes are built on demand, not at construction: they still agree."""
    loc, scale = torch.randn(5, 3), torch.rand(3) + 0.1  # scale broadcast over the batch
    ours, library = DiagonalNormal(loc, scale), Independent(Normal(loc, scale), 1)
    assert (ours.batch_shape, ours.event_shape) == (library.batch_shape, library.event_shape) == ((5,), (3,))
    assert isinstance(ours.base_dist, Normal)
    torch.testing.assert_close(ours.mean, library.mean)
    torch.testing.assert_close(ours.variance, library.variance)
    assert ours.sample((2,)).shape == (2, 5, 3)

    logits = torch.randn(4, 1, 2, 2)
    bernoulli, library = IndependentBernoulli(logits, 3), Independent(Bernoulli(logits=logits), 3)
    assert (bernoulli.batch_shape, bernoulli.event_shape) == (library.batch_shape, library.event_shape) == ((4,), (1, 2, 2))
    torch.testing.assert_close(bernoulli.mean, library.mean)
    assert bernoulli.sample().shape == (4, 1, 2, 2)
