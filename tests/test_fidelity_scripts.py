"""The scripts that measure a departure from the VampPrior paper's code (docs/fidelity.md) do what they
say: the clamped Bernoulli is the official one, trained on where a gradient is taken, and the
Monte-Carlo KL replaces the closed form."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaebench.distributions import IndependentBernoulli
from vaebench.distributions.normal import DiagonalNormal, IsotropicNormal
from vaebench.metrics import elbo

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_clamped_bernoulli_caps_a_confidently_wrong_pixel_and_agrees_elsewhere():
    clamp = script("bernoulli_clamp")
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[-30.0, 30.0, 2.0, -1.5]])  # two pixels beyond the clamp, wrong; two within
    exact = clamp.log_bernoulli_exact(logits, x)
    assert torch.allclose(exact, IndependentBernoulli(logits, 1).log_prob(x))
    capped = clamp.log_bernoulli_clamped(logits, x)
    within = torch.nn.functional.logsigmoid(torch.tensor(2.0)) + torch.nn.functional.logsigmoid(torch.tensor(1.5))
    # 1 - (1 - 1e-5) is 1.0014e-5 in float32, as in the official code: 1.4e-3 nats off log(1e-5)
    assert abs(float(capped) - float(2 * math.log(1e-5) + within)) < 2e-3
    assert float(exact) < float(capped) - 30  # the exact score charges each wrong pixel its full 30 nats


def test_the_monte_carlo_kl_replaces_the_closed_form_by_log_q_minus_log_p(monkeypatch):
    mc = script("train_monte_carlo_kl")
    torch.manual_seed(0)
    q = DiagonalNormal(torch.randn(5, 3), torch.rand(5, 3) + 0.1)
    p = IsotropicNormal(torch.zeros(3), torch.ones(3), 1.0)
    z = q.rsample()
    closed = elbo.elbo_terms(torch.zeros(5), {"z": (q, p, z)})["kl"]
    assert torch.allclose(closed, torch.distributions.kl_divergence(q.base_dist, p.base_dist).sum(-1))
    monkeypatch.setattr(elbo, "analytic_kl", mc.monte_carlo_everywhere)
    sampled = elbo.elbo_terms(torch.zeros(5), {"z": (q, p, z)})["kl"]
    assert torch.allclose(sampled, q.log_prob(z) - p.log_prob(z))
    assert not torch.allclose(sampled, closed, atol=1e-2)


def test_the_clamp_trains_where_a_gradient_is_taken_and_scoring_stays_exact(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    clamped = script("train_clamped_bernoulli").clamped_where_differentiated
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[-30.0, 30.0, 2.0, -1.5]], requires_grad=True)
    p_x = IndependentBernoulli(logits, 1)
    trained = clamped(p_x, x)
    assert torch.allclose(trained, script("bernoulli_clamp").log_bernoulli_clamped(logits, x))
    trained.sum().backward()
    assert logits.grad[0, :2].abs().max() == 0 and logits.grad[0, 2:].abs().min() > 0.1  # none past the clamp
    with torch.no_grad():
        assert torch.equal(clamped(p_x, x), IndependentBernoulli(logits, 1).log_prob(x))
    draws = IndependentBernoulli(logits.detach().repeat(3, 1).requires_grad_(), 1)  # IWAE: 3 draws of the point
    assert torch.allclose(clamped(draws, x), trained.detach().repeat(3))


@pytest.mark.parametrize("name, note", [("train_monte_carlo_kl", "monte_carlo_kl"),
                                        ("train_clamped_bernoulli", "clamped_bernoulli")])
def test_a_run_of_each_departure_script_completes_and_says_so_in_its_config(tmp_path, name, note):
    run = tmp_path / "run"
    args = ["trainer.epochs=1", "model.hidden_dim=8", "model.latent_dim=2", "eval.iw_samples=4", "eval.gap_points=0",
            "eval.max_points=50", f"hydra.run.dir={run}"]
    subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *args], cwd=tmp_path, check=True,
                   capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["config"]["trainer"]["note"] == note
