"""trainer.compile: a compiled step gives the eager step's numbers (loss, logged sums and gradients) for
every model, prior and objective; `auto` compiles only where the rest of the run repays the compile."""

import logging

import pytest
import torch
from omegaconf import OmegaConf

from vaebench.config.components import build_model, build_objective
from vaebench.run import compiled
from vaebench.run.compiled import CompilePlan
from vaebench.run.step import TrainingStep

MODELS = {"mlp": ("vaebench.models.MLPVAE", (1, 8, 8)), "conv": ("vaebench.models.ConvVAE", (1, 8, 8)),
          "hvae": ("vaebench.models.HVAE", (1, 8, 8)), "conv64": ("vaebench.models.BurgessVAE", (1, 32, 32))}
PRIORS = {"standard": {"_target_": "vaebench.priors.StandardPrior"}, "mog": {"_target_": "vaebench.priors.MixturePrior", "K": 5},
          "vamp": {"_target_": "vaebench.priors.VampPrior", "K": 5},
          "aggregate": {"_target_": "vaebench.priors.AggregatePosteriorPrior", "chunk_size": 16}}
OBJECTIVES = {"elbo": {"_target_": "vaebench.objectives.ELBO"}, "capacity": {"_target_": "vaebench.objectives.Capacity"},
              "free_bits": {"_target_": "vaebench.objectives.FreeBits"}, "beta_tc": {"_target_": "vaebench.objectives.BetaTC"},
              "iwae": {"_target_": "vaebench.objectives.IWAE", "k": 3}}
# Every model with the standard prior, every prior with the MLP, every objective with the MLP.
CASES = ([(m, "standard", "elbo") for m in MODELS] + [("mlp", p, "elbo") for p in PRIORS if p != "standard"]
         + [("mlp", "standard", o) for o in OBJECTIVES if o != "elbo"])


def tiny_step(model_name: str, prior: str, objective: str) -> tuple[TrainingStep, torch.Tensor]:
    target, shape = MODELS[model_name]
    torch.manual_seed(0)
    x = torch.rand(24, *shape).bernoulli()
    extra = {"channels": 4} if model_name in ("conv", "conv64") else {}
    cfg = OmegaConf.create({"model": {"_target_": target, "latent_dim": 3, "hidden_dim": 16, **extra}, "prior": PRIORS[prior]})
    model = build_model(cfg, shape, x)
    built = build_objective(OmegaConf.create(OBJECTIVES[objective]), model, len(x), 1, 1.0)
    return TrainingStep(model, built, 1e-3, torch.device("cpu")), x


def loss_sums_and_gradients(loss_fn, step: TrainingStep, x: torch.Tensor):
    torch.manual_seed(1)  # the same draws for both
    loss, _, sums = loss_fn(x, torch.ones(()))
    learned = [p for p in step.model.parameters() if p.requires_grad]
    return loss, sums, torch.autograd.grad(loss, learned, allow_unused=True)


def assert_same(eager, compiled_):
    for a, b in zip(eager[:2], compiled_[:2]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    for a, b in zip(eager[2], compiled_[2]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_name,prior,objective", CASES, ids=["-".join(c) for c in CASES])
def test_a_traced_step_gives_the_eager_numbers(model_name, prior, objective):
    """Dynamo's graph and AOT autograd's backward (the `aot_eager` backend: eager kernels, so the draws are
    the same): what compiling changes of the step's meaning, a branch frozen at tracing included."""
    torch._dynamo.reset()
    step, x = tiny_step(model_name, prior, objective)
    eager = loss_sums_and_gradients(step._loss, step, x)
    traced = torch.compile(step._loss, backend="aot_eager")
    assert_same(eager, loss_sums_and_gradients(traced, step, x))


def test_the_compiled_step_draws_what_the_eager_step_draws():
    """The real thing, inductor's generated kernels, on the VampPrior MLP (about 20 s of compiling), as
    a run compiles it: the same random draws as the eager step (its numbers within rounding) and the
    generator left in the same state, so that compiled or not changes no draw of the run."""
    torch._dynamo.reset()
    step, x = tiny_step("mlp", "vamp", "elbo")
    eager = loss_sums_and_gradients(step._loss, step, x)
    eager_state = torch.get_rng_state()
    compiled_ = loss_sums_and_gradients(compiled.CompiledOrEager(step._loss), step, x)
    assert_same(eager, compiled_)
    assert torch.equal(torch.get_rng_state(), eager_state)


@pytest.mark.parametrize("steps_left,decision", [(60, False), (2_000_000, True)])
def test_auto_compiles_where_the_rest_of_the_run_repays_it(steps_left, decision, caplog):
    plan = CompilePlan(lambda: steps_left, torch.device("cpu"))
    with caplog.at_level(logging.INFO, logger="vaebench"):
        answers = [plan.observe(0.004) for _ in range(compiled.TIMED_STEPS)]
    assert answers[:-1] == [None] * (compiled.TIMED_STEPS - 1) and answers[-1] is decision
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"trainer.compile=auto: {'compiling the step' if decision else 'eager'}")
    assert f"{steps_left:,} steps left (4.0 ms each eager)" in said and "trainer.compile=true or false" in said


def test_auto_switches_the_step_to_compiled_after_its_timed_steps(monkeypatch):
    step, x = tiny_step("mlp", "standard", "elbo")
    step.plan = CompilePlan(lambda: 10**9, torch.device("cpu"))
    seen = []
    monkeypatch.setattr("vaebench.run.step.CompiledOrEager", lambda fn: seen.append(fn) or fn)
    for _ in range(compiled.TIMED_STEPS):
        assert step.loss_fn == step._loss  # eager while it times
        step(x, torch.ones(()))
    assert seen == [step._loss] and step.plan is None and step.compile_record() == {"compiled": True, "timed_s": []}


def test_a_resumed_step_keeps_the_decision_of_the_run_it_continues(monkeypatch):
    monkeypatch.setattr("vaebench.run.step.CompiledOrEager", lambda fn: ("compiled", fn))
    step, x = tiny_step("mlp", "standard", "elbo")
    step.setting, step.remaining_steps = "auto", lambda: 10**9
    step.keep_decision({"compiled": False, "timed_s": []})
    assert step.loss_fn == step._loss and step.plan is None and step.compiled is False
    step.keep_decision({"compiled": True, "timed_s": []})
    assert step.loss_fn == ("compiled", step._loss) and step.compiled is True
    step.compiled = None
    step.keep_decision({"compiled": None, "timed_s": [0.01] * 5})  # stopped while it timed: it times on from 5
    assert step.plan.seconds == [0.01] * 5 and step.loss_fn == step._loss
