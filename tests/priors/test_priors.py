"""Each prior is a normalised density, agrees with torch.distributions, and samples what it scores."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vaebench.models import MLPEncoder
from vaebench.distributions import DiagonalGaussianMixture
from vaebench.priors import MixturePrior, StandardPrior, VampPrior


def reference_mixture(m: DiagonalGaussianMixture) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(logits=m.log_weights), Independent(Normal(m.loc, m.scale), 1))


@pytest.mark.parametrize("scale_range", [(0.05, 0.2), (0.5, 3.0)])
def test_mixture_log_prob_matches_mixture_same_family(scale_range):
    torch.manual_seed(0)
    low, high = scale_range
    m = DiagonalGaussianMixture(torch.randn(7), torch.randn(7, 5), low + (high - low) * torch.rand(7, 5))
    z = torch.randn(3, 11, 5) * 1.5
    assert torch.allclose(m.log_prob(z), reference_mixture(m).log_prob(z), atol=2e-3, rtol=1e-5)


def test_mixture_marginals_match_one_dimensional_mixtures():
    torch.manual_seed(1)
    m = DiagonalGaussianMixture(torch.randn(4), torch.randn(4, 3), torch.rand(4, 3) + 0.2)
    z = torch.randn(9, 3)
    for j in range(3):
        one_d = MixtureSameFamily(Categorical(logits=m.log_weights), Normal(m.loc[:, j], m.scale[:, j]))
        assert torch.allclose(m.marginal_log_prob(z)[:, j], one_d.log_prob(z[:, j]), atol=1e-5)


def test_mixture_density_integrates_to_one():
    torch.manual_seed(2)
    m = MixturePrior(latent_dim=2, K=5)()
    grid = torch.linspace(-9, 9, 601)
    z = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1)
    cell = (grid[1] - grid[0]) ** 2
    assert float(m.log_prob(z).detach().exp().sum() * cell) == pytest.approx(1.0, abs=2e-3)


def test_mixture_samples_follow_its_density():
    """The mean log-density of our samples equals that of the reference's samples (minus the entropy)."""
    torch.manual_seed(3)
    m = DiagonalGaussianMixture(torch.randn(6), 3 * torch.randn(6, 4), torch.rand(6, 4) + 0.3)
    ours = m.log_prob(m.sample((40000,)))
    theirs = m.log_prob(reference_mixture(m).sample((40000,)))
    standard_error = math.sqrt((ours.var() + theirs.var()) / 40000)
    assert abs(float(ours.mean() - theirs.mean())) < 4 * standard_error
    assert m.sample((5,)).shape == (5, 4)


def test_standard_prior_is_a_scaled_normal():
    p = StandardPrior(latent_dim=3, sigma=2.0)()
    z = torch.randn(10, 3)
    assert torch.allclose(p.log_prob(z), Normal(0.0, 2.0).log_prob(z).sum(-1))


def test_mog_with_one_component_is_a_gaussian():
    prior = MixturePrior(latent_dim=3, K=1)
    p = prior()
    z = torch.randn(10, 3)
    gaussian = Independent(Normal(prior.loc[0], p.scale[0]), 1)
    assert torch.allclose(p.log_prob(z), gaussian.log_prob(z), atol=1e-5)


def test_vamp_prior_with_one_pseudo_input_is_its_posterior():
    torch.manual_seed(4)
    encoder = MLPEncoder((1, 4, 4), hidden_dim=8, latent_dim=3)
    prior = VampPrior(encoder, (1, 4, 4), K=1)
    q_u = encoder(prior.pseudo_inputs)
    z = torch.randn(10, 3)
    assert torch.allclose(prior().log_prob(z), Independent(Normal(q_u.base_dist.loc[0], q_u.base_dist.scale[0]), 1).log_prob(z), atol=1e-4)


def test_vamp_prior_pseudo_inputs_stay_in_the_data_range_and_learn():
    torch.manual_seed(5)
    encoder = MLPEncoder((1, 4, 4), hidden_dim=8, latent_dim=3)
    prior = VampPrior(encoder, (1, 4, 4), torch.rand(20, 1, 4, 4), K=6, init="data", learn_weights=True)
    u = prior.pseudo_inputs.detach()
    assert u.shape == (6, 1, 4, 4) and float(u.min()) >= 0 and float(u.max()) <= 1
    prior().log_prob(torch.randn(5, 3)).sum().backward()
    assert prior.unclamped_inputs.grad is not None and prior.logits.grad is not None
    assert not any(p is prior.unclamped_inputs for p in encoder.parameters())
    assert len(list(prior.parameters())) == 2  # the encoder is shared, not owned
    with torch.no_grad():  # pushed past the range, they are still images of it
        prior.unclamped_inputs.add_(torch.randn_like(prior.unclamped_inputs) * 3)
    u = prior.pseudo_inputs.detach()
    assert float(u.min()) == prior.low and float(u.max()) == prior.high


@pytest.mark.parametrize("data", ["images in [0, 1]", "values in [-2, 1.5]"])
def test_one_adam_step_moves_a_pseudo_input_pixel_by_about_the_learning_rate(data):
    """Pixel values behind a clamp, as the official code holds them: Adam's first step moves each by lr
    times g / (|g| + eps), lr for any gradient far above eps, in the data's own units. (The logits behind
    a sigmoid that vaebench held before moved a pixel near 0.05 by about 0.05 lr.)"""
    torch.manual_seed(7)
    encoder = MLPEncoder((1, 4, 4), hidden_dim=8, latent_dim=3)
    train = torch.rand(20, 1, 4, 4) if data == "images in [0, 1]" else -2 + 3.5 * torch.rand(20, 1, 4, 4)
    for init in ("random", "data"):  # the data's pixels include its range's ends, where the clamp passes no gradient
        prior = VampPrior(encoder, (1, 4, 4), train, K=6, init=init)
        # lr below the 1e-3 of the range by which a training point's pixels start inside it: no step reaches an end
        start, lr = prior.pseudo_inputs.detach().clone(), 1e-4
        optimizer = torch.optim.Adam([prior.unclamped_inputs], lr=lr)
        (-prior().log_prob(torch.randn(8, 3)).mean()).backward()  # plain gradients, no rescaling
        optimizer.step()
        moved = (prior.pseudo_inputs.detach() - start).abs()
        assert float(moved.min()) == pytest.approx(lr, rel=1e-3) and float(moved.max()) == pytest.approx(lr, rel=1e-3)


@pytest.mark.parametrize("data", [None, "values in [-2, 1.5]"])
def test_pseudo_inputs_saved_as_logits_load_as_the_pixels_they_were(data):
    """A state saved before the pseudo-inputs became clamped values holds their logits (`raw_inputs`):
    they load as exactly the pixels the old sigmoid gave, computed as it computed them."""
    torch.manual_seed(8)
    encoder = MLPEncoder((1, 4, 4), hidden_dim=8, latent_dim=3)
    prior = VampPrior(encoder, (1, 4, 4), None if data is None else -2 + 3.5 * torch.rand(20, 1, 4, 4), K=4)
    logits, weights = 3 * torch.randn(4, 1, 4, 4), torch.randn(4)
    unit = torch.sigmoid(logits)
    before = unit if data is None else prior.low + (prior.high - prior.low) * unit
    saved = {"raw_inputs": logits, "logits": weights}
    prior.load_state_dict(saved)
    assert torch.equal(prior.pseudo_inputs, before) and torch.equal(prior.logits.detach(), weights)
    assert set(saved) == {"raw_inputs", "logits"}  # the caller's state is left as it was
    assert set(prior.state_dict()) == {"unclamped_inputs", "logits"}  # saved again in today's form


def test_vamp_prior_with_frozen_inputs_keeps_its_training_points():
    torch.manual_seed(6)
    encoder = MLPEncoder((1, 4, 4), hidden_dim=8, latent_dim=3)
    train = torch.rand(20, 1, 4, 4)
    prior = VampPrior(encoder, (1, 4, 4), train, K=5, init="data", learn_inputs=False)
    start = prior.pseudo_inputs.detach().clone()
    optimizer = torch.optim.Adam([p for p in [*encoder.parameters(), *prior.parameters()] if p.requires_grad], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (-prior().log_prob(torch.randn(8, 3)).mean()).backward()
        optimizer.step()
    assert torch.equal(prior.pseudo_inputs.detach(), start)
    assert all(any(torch.equal(u, x) for x in train) for u in start)  # exactly training points
    assert next(encoder.parameters()).grad is not None  # the encoder still learns through them


def float64_mixture_log_densities(m: DiagonalGaussianMixture, z: torch.Tensor):
    """log p(z) and the 1-D marginals' log p(z_j), directly from (z - mu) / s in float64."""
    per_dim = Normal(m.loc.double(), m.scale.double()).log_prob(z.double().unsqueeze(-2))  # (M, K, D)
    log_w = m.log_weights.double()
    return torch.logsumexp(per_dim.sum(-1) + log_w, -1), torch.logsumexp(per_dim + log_w.unsqueeze(-1), -2)


@pytest.mark.parametrize("smallest_scale,largest_mean", [(1e-4, 10.0), (1e-3, 10.0), (0.01, 3.0), (0.3, 1.0)])
def test_mixture_log_density_is_accurate_for_sharp_components(smallest_scale, largest_mean):
    """Scales down to 1e-4 and means up to +-10, 40 dimensions, at points drawn from the components
    (where the expanded form's float32 version lost up to thousands of nats): within 1e-3 per point."""
    torch.manual_seed(6)
    k, d = 200, 40
    loc = (2 * torch.rand(k, d) - 1) * largest_mean
    scale = torch.exp(torch.empty(k, d).uniform_(math.log(smallest_scale), 0.0))
    scale[:20] = smallest_scale  # some components sharp in every dimension
    m = DiagonalGaussianMixture(torch.randn(k), loc, scale)
    pick = torch.randint(k, (1000,))
    z = loc[pick] + scale[pick] * torch.randn(1000, d)
    joint, marginals = float64_mixture_log_densities(m, z)
    assert (m.log_prob(z).double() - joint).abs().max() <= 1e-3
    assert (m.marginal_log_prob(z).double() - marginals).abs().max() <= 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_mixture_reduced_in_tiles_of_components_gives_the_densities_of_one_piece(monkeypatch, dtype):
    """Without gradients a wide mixture is reduced a tile of components at a time (CPU_TILE_COMPONENTS),
    the tiles combined by a running maximum and sum: here 7 components a tile and 3 rows a block, the
    largest term of a row in any tile (the first, a middle one or the last) and terms far below it."""
    from vaebench.distributions import mixture

    torch.manual_seed(3)
    k, d = 50, 6
    loc, scale = 3 * torch.randn(k, d), torch.exp(torch.empty(k, d).uniform_(math.log(0.05), 0.0))
    m = DiagonalGaussianMixture(torch.randn(k), loc, scale, dtype)
    pick = torch.tensor([0, 3, 6, 7, 24, 48, 49])  # in the first tile, at a tile's ends, in the last
    z = torch.cat([loc[pick] + scale[pick] * torch.randn(len(pick), d), 10 * torch.randn(5, d)])  # and far out
    joint, marginals = float64_mixture_log_densities(m, z)
    with torch.no_grad():
        whole = m.log_prob(z), m.marginal_log_prob(z)
        monkeypatch.setattr(mixture, "CPU_TILE_COMPONENTS", 7)
        monkeypatch.setattr(mixture, "CPU_BLOCK_ELEMENTS", 7 * d * 3)
        tiled = m.log_prob(z), m.marginal_log_prob(z)
    for one, other, exact in zip(whole, tiled, (joint, marginals)):
        if dtype == torch.float64:  # float32 expansions of other shapes round otherwise, within the next line's 1e-3
            torch.testing.assert_close(other, one, rtol=1e-6, atol=1e-5)
        assert (other.double() - exact).abs().max() <= (1e-3 if dtype == torch.float32 else 1e-4)


def test_a_mixture_writes_blocks_of_log_densities_into_the_callers_buffer():
    """With `out`, the joint and marginal component log-densities of each block are the same numbers,
    written into one buffer the caller reuses (what keeps a 50,000-point surgery's memory flat)."""
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        mixture = DiagonalGaussianMixture(torch.randn(30), torch.randn(30, 4), torch.rand(30, 4) + 0.1, dtype)
        buffer = torch.empty(10 * 30 * 4)
        for z in (torch.randn(10, 4), torch.randn(3, 4)):  # a full block, then a last, shorter one
            joint = mixture.component_log_prob(z, out=buffer)
            assert joint.data_ptr() == buffer.data_ptr() and torch.equal(joint, mixture.component_log_prob(z))
            marginal = mixture.component_marginal_log_prob(z, out=buffer)
            assert marginal.data_ptr() == buffer.data_ptr()
            assert torch.equal(marginal, mixture.component_marginal_log_prob(z))


def test_a_mixture_evaluates_many_points_in_blocks_with_the_same_numbers_and_gradients(monkeypatch):
    """log_prob and marginal_log_prob take z in blocks of MIXTURE_BLOCK_ELEMENTS component densities (so
    that a 50,000-component aggregate at 1,000 points needs no 16 GB array): the same values and
    gradients as in one piece."""
    from vaebench.distributions import mixture

    torch.manual_seed(0)
    loc, scale = torch.randn(30, 4, requires_grad=True), torch.rand(30, 4) + 0.1
    z = torch.randn(7, 5, 4)
    whole = DiagonalGaussianMixture(torch.zeros(30), loc, scale)
    joint, marginal = whole.log_prob(z), whole.marginal_log_prob(z)
    monkeypatch.setattr(mixture, "MIXTURE_BLOCK_ELEMENTS", 30 * 4 * 3)  # 3 rows a block for the marginals
    blocked = DiagonalGaussianMixture(torch.zeros(30), loc, scale)
    assert torch.equal(blocked.log_prob(z), joint) and torch.equal(blocked.marginal_log_prob(z), marginal)
    gradients = [torch.autograd.grad(f(m).sum(), loc)[0] for m in (whole, blocked)
                 for f in (lambda m: m.log_prob(z), lambda m: m.marginal_log_prob(z))]
    assert torch.allclose(gradients[0], gradients[2]) and torch.allclose(gradients[1], gradients[3])


def test_the_aggregate_keeps_float32_only_where_it_is_accurate():
    """aggregate_log_density picks float32 for broad posteriors and float64 for sharp ones; both within
    1e-3 nats per point of the float64 reference."""
    from vaebench.metrics.surgery import aggregate_log_density, aggregate_marginal_log_density, expansion_dtypes

    torch.manual_seed(7)
    for scale_low, expected in [(0.5, torch.float32), (0.003, torch.float64)]:
        loc = 3 * torch.randn(300, 40)
        scale = scale_low * (1 + torch.rand(300, 40))
        z = loc + scale * torch.randn_like(loc)
        assert expansion_dtypes(loc, scale)[0] == expected
        m = DiagonalGaussianMixture(torch.zeros(300), loc, scale)
        joint, marginals = float64_mixture_log_densities(m, z)
        assert (aggregate_log_density(z, loc, scale).double() - joint).abs().max() <= 1e-3
        assert (aggregate_marginal_log_density(z, loc, scale).double() - marginals).abs().max() <= 1e-3


def test_a_float64_expansion_keeps_gradients_and_float32_results():
    """The training step differentiates through the mixture: float64 inside, float32 out, gradients intact."""
    torch.manual_seed(8)
    prior = MixturePrior(latent_dim=3, K=4)
    z = torch.randn(5, 3, requires_grad=True)
    log_p = prior().log_prob(z)
    assert log_p.dtype == torch.float32
    log_p.sum().backward()
    assert z.grad is not None and prior.loc.grad is not None and torch.isfinite(prior.raw_scale.grad).all()


# -- the aggregate posterior of the training split (K = N) ------------------------------------------
def aggregate_prior(n=50, chunk_size=7, seed=0):
    from vaebench.models import MLPVAE
    from vaebench.priors import AggregatePosteriorPrior

    torch.manual_seed(seed)
    model = MLPVAE((1, 8, 8), latent_dim=3, hidden_dim=16)
    x = torch.rand(n, 1, 8, 8).bernoulli()
    model.prior = AggregatePosteriorPrior(3, model.encode, x, chunk_size=chunk_size)
    return model, x


def test_the_aggregate_prior_in_chunks_is_the_mixture_of_every_posterior_with_its_gradients():
    """The training path (chunked, recomputed in backward) gives the values and the encoder gradients of
    the plain mixture of all N posteriors; evaluation (no gradients) is that mixture itself."""
    model, x = aggregate_prior()
    z = torch.randn(4, 5, 3)
    p_z = model.prior()
    q = model.encode(x)
    reference = DiagonalGaussianMixture(torch.zeros(len(x)), q.loc, q.scale)
    log_p, marginal = p_z.log_prob(z), p_z.marginal_log_prob(z)
    assert log_p.shape == (4, 5) and marginal.shape == (4, 5, 3)
    assert torch.allclose(log_p, reference.log_prob(z), atol=1e-5)
    assert torch.allclose(marginal, reference.marginal_log_prob(z), atol=1e-5)
    weights = list(model.encoder.parameters())
    chunked = torch.autograd.grad(log_p.sum() + marginal.sum(), weights)
    plain = torch.autograd.grad(reference.log_prob(z).sum() + reference.marginal_log_prob(z).sum(), weights)
    for a, b in zip(chunked, plain):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        evaluated = model.prior()
        assert isinstance(evaluated, DiagonalGaussianMixture) and len(evaluated.loc) == len(x)
        assert torch.allclose(evaluated.log_prob(z), log_p, atol=1e-5)


def test_the_aggregate_prior_backpropagates_only_through_points_that_carry_weight_at_sharp_posteriors():
    """At sharp posteriors most points have a negligible responsibility for every z of the step: the
    training path encodes only the others with gradients, and its value and encoder gradients are
    still those of the mixture of all N posteriors (each encoded in the same chunks), to float32."""
    model, x = aggregate_prior(n=200, seed=3)
    for p in model.encoder.parameters():
        p.data.mul_(3)
    last_layer = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    last_layer.bias.data[3:] -= 3.0  # posterior scales about 0.06, locations spread about 1.3
    encode, encoded_with_gradients = model.prior._encode[0], []

    def counting_encode(block):
        if torch.is_grad_enabled():
            encoded_with_gradients.append(len(block))
        return encode(block)

    model.prior._encode[0] = counting_encode
    with torch.no_grad():
        z = model.encode(x).sample()[:20]
    log_p = model.prior().log_prob(z)
    assert 0 < sum(encoded_with_gradients) < len(x) / 2
    posteriors = [encode(block) for block in x.split(7)]
    reference = DiagonalGaussianMixture(torch.zeros(len(x)), torch.cat([q.loc for q in posteriors]),
                                        torch.cat([q.scale for q in posteriors])).log_prob(z)
    assert torch.allclose(log_p, reference, atol=1e-5)
    weights = list(model.encoder.parameters())
    pruned, full = torch.autograd.grad(log_p.sum(), weights), torch.autograd.grad(reference.sum(), weights)
    for a, b in zip(pruned, full):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_the_aggregate_prior_leaves_no_marginal_kl_on_its_own_points_so_kl_is_mutual_information():
    """K = N on the training split: KL(q(z) || p(z)) = 0, so KL(q(z|x) || p(z)) = I(n; z) <= log N, within
    Monte-Carlo error; on other points the marginal KL is positive."""
    from vaebench.metrics.diagnostics import split_report

    model, x = aggregate_prior(n=200, seed=3)
    for p in model.encoder.parameters():  # informative codes: a mutual information well above 0
        p.data.mul_(3)
    train = split_report(model, x, batch_size=64, iw_samples=0, surgery_samples=16)
    assert abs(train["marginal_kl"]) < 1e-3
    assert train["mutual_info"] > 1.0 and train["mutual_info"] <= math.log(200) + 1e-6
    assert abs(train["kl"] - train["mutual_info"]) <= 4 * math.hypot(train["kl_se"], train["mutual_info_se"])
    other = split_report(model, torch.rand(200, 1, 8, 8).bernoulli(), batch_size=64, iw_samples=0, surgery_samples=16)
    assert other["marginal_kl"] > 4 * other["marginal_kl_se"]


def test_the_aggregate_prior_samples_its_mixture_in_training_too():
    """The training path's sampler draws a point, then z from its posterior: the mixture's mean and
    second moment, within 5 standard errors."""
    model, x = aggregate_prior(n=5, seed=4)
    p_z = model.prior()  # gradients on: the chunked distribution
    z = p_z.sample((20000,))
    with torch.no_grad():
        q = model.encode(x)
    mean, second = q.loc.mean(0), (q.loc ** 2 + q.scale ** 2).mean(0)
    assert z.shape == (20000, 3) and not z.requires_grad
    assert (z.mean(0) - mean).abs().max() <= 5 * float(z.std(0).max()) / math.sqrt(len(z))
    assert (z.pow(2).mean(0) - second).abs().max() <= 5 * float(z.pow(2).std(0).max()) / math.sqrt(len(z))


def test_the_aggregate_prior_needs_training_points():
    from vaebench.errors import UserError
    from vaebench.priors import AggregatePosteriorPrior

    with pytest.raises(UserError, match="prior=aggregate needs the training split"):
        AggregatePosteriorPrior(3, lambda x: None, None)


@pytest.mark.parametrize("spread,sharpness,dtype", [(1.0, 0.5, torch.float32), (3.0, 0.01, torch.float64)])
def test_a_prior_expands_in_float32_only_where_that_is_accurate(spread, sharpness, dtype):
    """At a training step a mixture prior's expansion runs in float32 where its rounding estimate allows
    and in float64 for sharp components; either way log p(z) at any z (not only the components' own
    samples) stays within 1e-3 nats of a float64 brute force, relative to its size."""
    from vaebench.distributions.mixture import expansion_dtype_at

    torch.manual_seed(0)
    loc, scale = spread * torch.randn(50, 40), sharpness * (0.5 + torch.rand(50, 40))
    assert expansion_dtype_at(loc, scale) == dtype
    z = torch.cat([loc[:20] + scale[:20] * torch.randn(20, 40), 2 * spread * torch.randn(20, 40)])  # near and far
    fast = DiagonalGaussianMixture(torch.zeros(50), loc, scale, expansion_dtype_at(loc, scale)).log_prob(z).double()
    exact = torch.logsumexp(Normal(loc.double(), scale.double()).log_prob(z.double().unsqueeze(1)).sum(-1), 1) - math.log(50)
    assert ((fast - exact).abs() / exact.abs().clamp(min=1.0)).max() < 1e-3
