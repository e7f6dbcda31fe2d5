"""Every model trains with a mixture prior from the command line: the two-level model's KL is its
layers' KLs, the VampPrior's pseudo-inputs are drawn, and the warm-up's beta is logged. The gated
models (`model.gated=true`) are the official VampPrior code's: its layers, its bounded log-variance,
its initialisation."""

import math

import pytest
import torch

from tests.conftest import TINY, read_metrics, run_cli, run_dirs
from tests.run.test_train_cli import events
from vaebench.metrics import elbo
from vaebench.models import HVAE, GatedDense, LogVarianceHead, MLPVAE


@pytest.mark.parametrize("model,prior,gated", [("hvae", "vamp", "false"), ("mlp", "mog", "false"), ("mlp", "vamp", "true")])
def test_every_prior_and_model_trains(tmp_path, model, prior, gated):
    run_cli(["train", *TINY, "trainer.epochs=1", f"model={model}", f"model.gated={gated}", f"prior={prior}", "prior.K=5",
             "trainer.kl_warmup_epochs=2", "beta=2"], cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    metrics = read_metrics(run_dir)
    if model == "hvae":
        assert metrics["val"]["kl"] == pytest.approx(metrics["val"]["kl_z1"] + metrics["val"]["kl_z2"], abs=1e-3)
    tags = events(run_dir).Tags()
    if prior == "vamp":
        assert "visuals/pseudo_inputs" in tags["images"]
    # train/beta is the beta the epoch's steps used, averaged over its points: 2-epoch warm-up to 2, epoch 1.
    n, batch = 4000, metrics["config"]["trainer"]["batch_size"]  # mnist5k's training split
    sizes = [min(batch, n - start) for start in range(0, n, batch)]
    used = sum(size * elbo.warmup_beta(2.0, b / len(sizes), 2) for b, size in enumerate(sizes)) / n
    assert events(run_dir).Scalars("train/beta")[0].value == pytest.approx(used, rel=1e-5)


# The official code's layer sizes for MNIST (models/VAE.py, models/HVAE_2level.py): a gated layer holds two
# linear maps, each head its mean's and its log-variance's.
def gated(n_in: int, n_out: int) -> int:
    return 2 * (n_in * n_out + n_out)


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


OFFICIAL_VAE = (gated(784, 300) + gated(300, 300) + 2 * linear(300, 40)            # q(z|x)
                + gated(40, 300) + gated(300, 300) + linear(300, 784))             # p(x|z)
OFFICIAL_HVAE = (gated(784, 300) + gated(300, 300) + 2 * linear(300, 40)           # q(z2|x)
                 + gated(784, 300) + gated(40, 300) + gated(600, 300) + 2 * linear(300, 40)  # q(z1|x,z2)
                 + gated(40, 300) + gated(300, 300) + 2 * linear(300, 40)          # p(z1|z2)
                 + gated(40, 300) + gated(40, 300) + gated(600, 300) + linear(300, 784))  # p(x|z1,z2)


@pytest.mark.parametrize("model,official", [(MLPVAE, OFFICIAL_VAE), (HVAE, OFFICIAL_HVAE)])
def test_the_gated_models_have_the_official_codes_layers(model, official):
    net = model((1, 28, 28), gated=True)
    assert sum(p.numel() for p in net.parameters()) == official
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    plain = model((1, 28, 28))  # the default stays the ReLU model that runs saved so far hold
    assert not any(isinstance(m, GatedDense) for m in plain.modules())


def test_a_gated_layer_is_a_linear_map_times_a_sigmoid_gate():
    torch.manual_seed(0)
    layer, x = GatedDense(5, 3), torch.randn(4, 5)
    (w, v), (b, c) = layer.linear.weight.chunk(2), layer.linear.bias.chunk(2)
    assert torch.allclose(layer(x), (x @ w.T + b) * torch.sigmoid(x @ v.T + c), atol=1e-6)


def test_the_log_variance_stays_in_the_papers_range_and_passes_no_gradient_beyond_it():
    torch.manual_seed(0)
    head = LogVarianceHead(6, 4)
    scale = head(100 * torch.randn(50, 6)).scale.detach()
    ends = torch.exp(torch.tensor([-3.0, 1.0]))  # scales of log-variances -6 and 2, in float32
    assert ends[0] <= scale.min() < scale.max() <= ends[1]
    with torch.no_grad():  # log-variances far beyond either end
        head.linear.weight[4:] = 0.0
        head.linear.bias[4:] = torch.tensor([-50.0, 50.0, -50.0, 50.0])
    q = head(torch.randn(3, 6))
    assert torch.equal(q.scale.detach(), ends.repeat(2).expand(3, 4))
    q.scale.sum().backward()
    assert not head.linear.weight.grad[4:].any() and not head.linear.bias.grad[4:].any()


def test_the_gated_models_weights_are_he_initialised():
    torch.manual_seed(0)
    net = MLPVAE((1, 28, 28), gated=True)
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            assert float(m.weight.detach().std()) == pytest.approx(math.sqrt(2.0 / m.in_features), rel=0.05)
