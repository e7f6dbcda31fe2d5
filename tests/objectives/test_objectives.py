"""Issue 17, objectives beyond β: each objective at its neutral setting is the β = 1 ELBO, β-TC's
parts add up to the KL, the IWAE bound rises with k below log p(x), each objective trains from the
command line and logs every ELBO term, bad values are refused in one paragraph, and the collapse
alarm fires on a collapsed model and not on a healthy one."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf

from tests.conftest import TINY, read_metrics, run_cli, run_dirs
from vaebench.metrics import elbo
from vaebench.metrics.collapse import CollapseWatch, collapse_finding, dimensions_in_use
from vaebench.config.components import build_model, build_objective
from vaebench.metrics.likelihood import importance_weighted_log_likelihood
from vaebench.errors import UserError
from vaebench.objectives import elbo_pass, top_layer
from vaebench.objectives.beta_tc import tc_decomposition
from vaebench.objectives.capacity import capacity_nats
from vaebench.run.train import config_dir  # also registers the config's resolvers

OBJECTIVES = ("elbo", "capacity", "free_bits", "beta_tc", "iwae")
QUANTITIES = {  # what each objective logs beside the ELBO terms, as train/objective/<name>
    "elbo": (),
    "capacity": ("capacity_nats",),
    "free_bits": ("free_bits_kl", "groups_below_lambda"),
    "beta_tc": ("mutual_info", "total_correlation", "dimwise_kl"),
    "iwae": ("iwae_bound",),
}


def tiny(*overrides: str):
    """A tiny model on random binary 4x4 images, its objective built as a run builds it."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model.hidden_dim=16", "model.latent_dim=3", *overrides])
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4).bernoulli()
    model = build_model(cfg, x.shape[1:], x)
    objective_module = get_object(cfg.objective._target_).__module__  # vaebench.objectives.beta_tc
    choices = {"objective": objective_module.rsplit(".", 1)[-1], "prior": "test"}
    objective = build_objective(cfg.objective, model, len(x), 1, cfg.beta, choices)
    return model, objective, x


def at_seed(fn, seed: int = 7):
    torch.manual_seed(seed)
    return fn()


def beta_one_loss(model, x, seed: int = 7) -> torch.Tensor:
    terms = at_seed(lambda: model.terms(x), seed)
    return elbo.beta_loss(terms, 1.0)


@pytest.mark.parametrize("overrides", [
    ["objective=capacity", "objective.capacity_max=0", "objective.gamma=1"],
    ["objective=free_bits", "objective.lambda_nats=0"],
    ["objective=free_bits", "objective.lambda_nats=0", "objective.group_size=3"],
])
def test_a_neutral_batch_objective_is_the_beta_one_elbo_loss(overrides):
    model, objective, x = tiny(*overrides)
    loss, terms, _ = at_seed(lambda: objective(model, x, torch.ones(()), torch.zeros(())))
    # C = 0: |KL - C| = KL, as the KL is >= 0; lambda = 0 frees nothing.
    assert float(loss) == pytest.approx(float(beta_one_loss(model, x).mean()), rel=1e-5)
    assert torch.equal(terms["elbo"], at_seed(lambda: model.terms(x))["elbo"])  # the logged ELBO is the ELBO's


def one_sample_elbo_loss(model, x, seed: int = 7) -> torch.Tensor:
    """-log p(x|z) + log q(z|x) - log p(z) at z ~ q(z|x): the ELBO loss with the Monte-Carlo KL."""
    terms, layers = at_seed(lambda: elbo_pass(model, x), seed)
    _, (q, p, z) = top_layer(layers)
    return -terms["reconstruction"] + q.log_prob(z) - p.log_prob(z)


def test_beta_tc_with_unit_weights_is_the_elbo_per_sample():
    model, objective, x = tiny("objective=beta_tc", "beta=1", "objective.alpha=1", "objective.gamma=1")
    loss, _, parts = at_seed(lambda: objective(model, x, torch.ones(()), None))
    assert loss.shape == (len(x),)
    torch.testing.assert_close(loss, one_sample_elbo_loss(model, x), rtol=1e-5, atol=1e-4)
    assert set(parts) == {"mutual_info", "total_correlation", "dimwise_kl"}


def test_beta_tc_parts_add_up_to_the_kl_estimate():
    model, _, x = tiny()
    _, layers = elbo_pass(model, x)
    _, (q, p, z) = top_layer(layers)
    parts = tc_decomposition(z, q.loc, q.scale, q.log_prob(z), p.base_dist.log_prob(z), dataset_size=1000)
    torch.testing.assert_close(sum(parts.values()), q.log_prob(z) - p.log_prob(z), rtol=1e-5, atol=1e-4)
    # Minibatch-weighted sampling counts x_i itself among the M posteriors out of N: log q(z_i) is at
    # least log q(z_i|x_i) - log(N M), so each point's mutual information is at most log(N M).
    assert (parts["mutual_info"] <= torch.log(torch.tensor(1000.0 * len(x))) + 1e-4).all()


def test_iwae_with_one_sample_is_the_elbo_per_sample():
    model, objective, x = tiny("objective=iwae", "objective.k=1")
    loss, terms, quantities = at_seed(lambda: objective(model, x, torch.ones(()), None))
    torch.testing.assert_close(loss, one_sample_elbo_loss(model, x), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(quantities["iwae_bound"], -loss.detach())
    assert not terms["elbo"].requires_grad  # logged, not optimised


@torch.no_grad()
def test_the_iwae_bound_rises_with_k_and_stays_below_the_log_likelihood():
    model, _, _ = tiny("objective=iwae")
    torch.manual_seed(1)
    x = torch.rand(400, 1, 4, 4).bernoulli()
    p_z = model.prior()

    def bound(k: int) -> float:
        from vaebench.objectives.iwae import iwae_bound

        return float(iwae_bound(model.log_importance_weights(x, p_z, k)).mean())

    bounds = [at_seed(lambda k=k: bound(k)) for k in (1, 5, 50)]
    log_px = float(at_seed(lambda: importance_weighted_log_likelihood(
        lambda block, s: model.log_importance_weights(block, p_z, s), x, 5000)).mean())
    assert bounds[0] < bounds[1] < bounds[2] < log_px, (bounds, log_px)


def test_capacity_rises_linearly_to_its_maximum():
    assert [capacity_nats(s, 25.0, 100) for s in (0, 50, 100, 1000)] == [0.0, 12.5, 25.0, 25.0]
    assert float(capacity_nats(torch.tensor(50.0), 25.0, 100)) == 12.5
    assert capacity_nats(3, 25.0, 0) == 25.0


@pytest.mark.parametrize("overrides,words", [
    (["objective=beta_tc", "prior=mog"], ["objective=beta_tc needs a factorised prior", "prior=test",
                                          "prior=standard"]),
    (["objective=free_bits", "objective.group_size=2"], ["objective.group_size=2", "3 latent dimensions"]),
])
def test_an_objective_that_cannot_work_with_the_model_is_refused(overrides, words):
    with pytest.raises(UserError) as refused:
        tiny(*overrides)
    for word in words:
        assert word in str(refused.value)


# -- the collapse alarm -------------------------------------------------------------------------------
def test_the_collapse_rule():
    assert collapse_finding(20, 40, 40, 30) is None      # a healthy default run: ~20 of 40 and more
    assert collapse_finding(0, 0, 40, 1) is None         # the first epoch is too early to judge
    assert "at most 3 of 40 latent dimensions have been in use in 2 epochs" in collapse_finding(3, 3, 40, 2)
    assert "fell from 20 to 4 of 40 by epoch 9" in collapse_finding(4, 20, 40, 9)
    assert collapse_finding(5, 20, 40, 9) is None         # 4 of 40 (10%) is the limit
    # below 10 latents only a model using none is collapsed: 1 of 1, 1 of 2 or 1 of 9 is a healthy small code
    assert collapse_finding(1, 1, 1, 5) is None and collapse_finding(1, 2, 2, 5) is None and collapse_finding(1, 1, 9, 5) is None
    assert "at most 0 of 1 latent dimensions" in collapse_finding(0, 0, 1, 5)
    assert "fell from 2 to 0 of 2" in collapse_finding(0, 2, 2, 5)
    assert collapse_finding(1, 3, 10, 5) and collapse_finding(2, 3, 10, 5) is None  # 10 latents: at most 1
    # in use: either count; early on the KL is spread thin while the means already vary
    assert dimensions_in_use({"active_units": 21, "kl_per_dim": torch.tensor([0.0, 0.3, 2.0])}) == {
        "active_units": 21, "informative_dims": 2}


def test_the_alarm_sounds_once_and_its_record_survives_a_resume():
    watch = CollapseWatch(40, settings={"objective": "elbo", "beta": 50.0, "beta_weighs": "the KL"})
    assert watch.observe(1, {"active_units": 0}) is None
    message = watch.observe(2, {"active_units": 0, "kl_per_dim": torch.zeros(40)})
    assert "Posterior collapse" in message and "a smaller beta (now 50)" in message and "free bits" in message
    assert "active units 0, informative dims 0" in message
    assert watch.observe(3, {"active_units": 0}) is None and len(watch.record["alarms"]) == 1
    resumed = CollapseWatch(40, record=OmegaConf.to_container(OmegaConf.create(watch.record)))
    assert resumed.observe(4, {"active_units": 0}) is None and len(resumed.record["alarms"]) == 1
    healthy = CollapseWatch(40)
    assert all(healthy.observe(e, {"active_units": 39, "kl_per_dim": torch.full((40,), 0.5)}) is None for e in range(5))
    assert "recovered_epoch" not in resumed.record["alarms"][0]


def test_latents_back_in_use_after_the_alarm_are_noted_once(caplog):
    """A conv VAE on sprites collapses in its first epochs and uses its latents later: the alarm stays,
    with the epoch it stopped holding."""
    watch = CollapseWatch(10)
    with caplog.at_level(logging.WARNING, logger="vaebench.metrics.collapse"):
        assert "Posterior collapse" in watch.observe(2, {"active_units": 0})
        watch.observe(3, {"active_units": 1})       # still within the limit of 1 of 10
        watch.observe(7, {"active_units": 6})
        watch.observe(8, {"active_units": 7})
    (alarm,) = watch.record["alarms"]
    assert alarm["epoch"] == 2 and alarm["recovered_epoch"] == 7 and alarm["in_use_at_recovery"] == 6
    notes = [r.getMessage() for r in caplog.records if "back in use" in r.getMessage()]
    assert len(notes) == 1 and "6 of 10 dimensions at epoch 7" in notes[0] and "alarm of epoch 2" in notes[0]


# -- from the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def objective_runs(tmp_path_factory):
    """Every objective as one sweep, with a collapsed run (beta = 50) beside them."""
    root = tmp_path_factory.mktemp("objectives")
    run_cli(["train", "-m", *TINY, f"objective={','.join(OBJECTIVES)}"], cwd=root)
    collapsed = tmp_path_factory.mktemp("collapsed")
    run_cli(["train", *TINY, "beta=50"], cwd=collapsed)
    return {read_metrics(d)["config"]["choices"]["objective"]: d for d in run_dirs(root)}, run_dirs(collapsed)[0]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_trains_from_the_cli_and_logs_every_elbo_term(objective, objective_runs):
    from tests.run.test_train_cli import TERMS, events

    run_dir = objective_runs[0][objective]
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["config"]["choices"]["objective"] == objective
    assert metrics["alarms"] == []  # a healthy tiny run
    tags = events(run_dir).Tags()["scalars"]
    for term in TERMS:
        assert f"train/{term}" in tags, term
    for term in ("elbo", "reconstruction", "kl", "log_joint", "entropy"):
        assert f"val/{term}" in tags
    for name in QUANTITIES[objective]:
        assert f"train/objective/{name}" in tags, name
    assert f"objective={objective}" in (run_dir / "train.log").read_text()


def test_a_healthy_run_with_a_one_dimensional_code_raises_no_alarm(tmp_path):
    run_cli(["train", *TINY, "model.latent_dim=1", "trainer.epochs=4"], cwd=tmp_path)
    metrics = read_metrics(run_dirs(tmp_path)[0])
    assert metrics["status"] == "completed" and metrics["test"]["active_units"] == 1
    assert metrics["alarms"] == []


def test_a_collapsed_run_raises_the_alarm_once(objective_runs):
    _, run_dir = objective_runs
    (alarm,) = read_metrics(run_dir)["alarms"]
    assert alarm["kind"] == "posterior_collapse" and "a smaller beta (now 50)" in alarm["message"]
    assert (run_dir / "train.log").read_text().count("Posterior collapse") == 1


BAD = {
    "k below 1": (["objective=iwae", "objective.k=0"], ["objective.k=0", ">= 1"]),
    "negative gamma": (["objective=capacity", "objective.gamma=-1"], ["objective.gamma=-1", ">= 0"]),
    "beta_tc on a mixture": (["objective=beta_tc", "prior=mog", "prior.K=3"], ["objective=beta_tc", "prior=mog", "factorised"]),
    "beta under objective": (["objective=beta_tc", "+objective.beta=6"], ["objective.beta cannot be set"]),
}


def test_bad_objective_values_are_refused_in_one_paragraph(tmp_path):
    def refuse(name):
        (tmp_path / name).mkdir()
        return run_cli(["train", *TINY, *BAD[name][0]], cwd=tmp_path / name, check=False)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        procs = dict(zip(BAD, pool.map(refuse, BAD)))
    for name, proc in procs.items():
        assert proc.returncode == 2, (name, proc.stderr)
        message = [line for line in proc.stderr.splitlines() if line.startswith("vaebench: ")]
        assert len(message) == 1 and "Traceback" not in proc.stderr, proc.stderr
        for word in BAD[name][1]:
            assert word in message[0], (name, message[0])


def test_the_trainer_steps_the_capacity_schedule_and_logs_it(tmp_path):
    from tests.run.test_trainer import tiny_trainer

    trainer = tiny_trainer(tmp_path, ["trainer.epochs=2", "objective=capacity", "objective.capacity_steps=4",
                                      "objective.capacity_max=2", "objective.gamma=3"])
    seen = []
    train_step = trainer.train_step

    def recording_step(x, beta, measure_grad_norm=False):
        sums, grad_norm = train_step(x, beta, measure_grad_norm)  # summed over the batch's points
        seen.append(dict(zip(trainer.term_names, (sums / len(x)).tolist())))
        return sums, grad_norm

    trainer.train_step = recording_step
    assert trainer.fit() == "completed"
    assert [m["objective/capacity_nats"] for m in seen] == pytest.approx([0, 0.5, 1, 1.5, 2, 2, 2, 2])
    for m in seen:  # the loss each step differentiated used that C
        assert m["loss"] == pytest.approx(-m["reconstruction"] + 3 * abs(m["kl"] - m["objective/capacity_nats"]), rel=1e-5)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("model_prior", [["prior=mog", "prior.K=3"], ["prior=vamp", "prior.K=3"], ["model=hvae"],
                                         ["model=hvae", "prior=vamp", "prior.K=3"]])
def test_each_objective_takes_a_step_with_every_model_and_prior_it_accepts(objective, model_prior):
    if objective == "beta_tc" and any(p in model_prior for p in ("prior=mog", "prior=vamp")):
        pytest.skip("refused: beta_tc needs a factorised prior (tested above)")
    model, built, x = tiny(f"objective={objective}", *model_prior)
    loss, terms, quantities = built(model, x, torch.ones(()), torch.zeros(()))
    loss.mean().backward()
    assert torch.isfinite(loss).all() and all(torch.isfinite(v).all() for v in (*terms.values(), *quantities.values()))
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert set(quantities) == set(QUANTITIES[objective])
