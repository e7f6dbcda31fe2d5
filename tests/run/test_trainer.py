"""The trainer's step: the beta of the KL warm-up, step by step, in its loss; bf16 activations."""

import copy
import os
import signal

import pytest
import torch
from hydra import compose, initialize_config_dir

from vaebench.metrics import elbo
from vaebench.views.board import Board
from vaebench.datasets import Dataset
from vaebench.config.components import build_model
from vaebench.run.train import config_dir  # also registers the config's resolvers
from vaebench.run.trainer import Stop, Trainer
from vaebench.run.training_state import stop_reason


def tiny_trainer(tmp_path, overrides: list[str], image_size: int = 4) -> Trainer:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "model.hidden_dim=8", "model.latent_dim=2", "trainer.batch_size=10", "eval.surgery_every=0", *overrides])
    torch.manual_seed(0)
    images = torch.rand(60, 1, image_size, image_size)
    data = Dataset("synthetic", images[:40], images[40:50].bernoulli(), images[50:].bernoulli(), dynamic_binarize=True)
    model = build_model(cfg, data.data_shape, data.train)
    return Trainer(model, data, cfg, tmp_path, Board(tmp_path / "board"))


@pytest.mark.parametrize("warmup_epochs", [0, 2])
def test_each_step_trains_with_the_warm_up_beta(tmp_path, warmup_epochs):
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=2", f"trainer.kl_warmup_epochs={warmup_epochs}", "beta=4"])
    seen = []  # (beta, [loss, *term means]) of each step
    train_step = trainer.train_step

    def recording_step(x, beta, measure_grad_norm=False):
        means, grad_norm = train_step(x, beta, measure_grad_norm)
        seen.append((float(beta), dict(zip(trainer.term_names, means.tolist()))))
        return means, grad_norm

    trainer.train_step = recording_step
    trainer.fit()

    expected = [elbo.warmup_beta(4.0, epoch + b / 4, warmup_epochs) for epoch in range(2) for b in range(4)]
    assert [beta for beta, _ in seen] == pytest.approx(expected)
    for beta, means in seen:  # the loss each step differentiated used that beta
        assert means["loss"] == pytest.approx(-means["reconstruction"] + beta * means["kl"], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("overrides", [
    ["prior=standard"], ["prior=mog"], ["prior=vamp", "prior.K=5"], ["model=hvae", "prior=vamp", "prior.K=5"], ["model=conv"],
])
def test_a_step_under_bf16_autocast_logs_finite_float32_terms(tmp_path, overrides):
    # trainer.precision=bf16 autocasts on CUDA only; CPU autocast stands in for it here, so that every
    # model and prior meets bf16 activations (tests/test_gpu.py runs the real thing on a GPU).
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=1", *overrides], image_size=8)
    trainer.autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    x = trainer.data.train_batch(torch.arange(10))
    with trainer.autocast:
        assert trainer.model.encode(x).loc.dtype == torch.bfloat16  # the distributions do see bf16
    means, grad_norm = trainer.train_step(x, torch.ones(()), measure_grad_norm=True)
    assert means.dtype == torch.float32 and torch.isfinite(means).all() and torch.isfinite(grad_norm)
    assert trainer.fit() == "completed"


def test_the_progress_bar_moves_every_step_within_an_epoch_shorter_than_the_log_interval(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=2", "trainer.log_every=50"])  # epochs of 4 steps
    seen = []  # (epoch, what the bar was told)

    class RecordingBar:
        def __init__(self, epoch):
            self.epoch = epoch

        def advance(self, done):
            seen.append((self.epoch, "advance", done))

        def show(self, done, step, means, names):
            seen.append((self.epoch, "show", done))

        def close(self):
            pass

    monkeypatch.setattr(trainer, "_progress_bar", lambda total: RecordingBar(trainer.progress.epoch + 1))
    trainer.fit()
    for epoch in (1, 2):
        assert [done for e, kind, done in seen if e == epoch and kind == "advance"] == [1, 2, 3, 4]
        assert [done for e, kind, done in seen if e == epoch and kind == "show"] == [4]  # the epoch's last step


def recorded_epochs(trainer: Trainer):
    """Wraps the step and the board: [(batch size, beta, {name: sum over the batch})] and the logged train scalars."""
    steps, logged = [], []
    train_step, scalars = trainer.train_step, trainer.board.scalars

    def recording_step(x, beta, measure_grad_norm=False):
        sums, grad_norm = train_step(x, beta, measure_grad_norm)
        steps.append((len(x), float(beta), dict(zip(trainer.term_names, sums.tolist()))))
        return sums, grad_norm

    def recording_scalars(split, values, step):
        if split == "train":
            logged.append(dict(values))
        scalars(split, values, step)

    trainer.train_step, trainer.board.scalars = recording_step, recording_scalars
    return steps, logged


@pytest.mark.parametrize("warmup_epochs", [0, 3])
def test_the_epoch_logs_per_point_means_and_the_beta_its_steps_used(tmp_path, warmup_epochs):
    """40 points in batches of 15, 15 and 10: each term is the mean over points (the short batch weighs
    10/40, not 1/3); beta is the steps' beta averaged over the points; samples/s counts points."""
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=2", "trainer.batch_size=15", f"trainer.kl_warmup_epochs={warmup_epochs}", "beta=2"])
    steps, logged = recorded_epochs(trainer)
    seconds = []
    end_epoch = trainer._end_epoch
    trainer._end_epoch = lambda *args, **kw: (seconds.append((args[2], kw["samples"])), end_epoch(*args, **kw))[1]
    trainer.fit()
    assert [size for size, _, _ in steps] == [15, 15, 10] * 2
    for epoch, values in enumerate(logged):
        mine = steps[3 * epoch: 3 * epoch + 3]
        for name in ("loss", "elbo", "reconstruction", "kl"):
            assert values[name] == pytest.approx(sum(s[name] for _, _, s in mine) / 40, rel=1e-5)
        assert values["beta"] == pytest.approx(sum(size * beta for size, beta, _ in mine) / 40, rel=1e-5)
        if warmup_epochs == 0:  # beta constant within the epoch: the logged loss is -reconstruction + beta * kl
            assert values["loss"] == pytest.approx(-values["reconstruction"] + values["beta"] * values["kl"], rel=1e-5)
        else:  # a warm-up: the loss is still the mean of what each step minimised
            assert values["beta"] == pytest.approx(2 * (epoch + (15 * 0 + 15 * 1 / 3 + 10 * 2 / 3) / 40) / 3, rel=1e-5)
        elapsed, samples = seconds[epoch]
        assert samples == 40 and values["samples_per_s"] == pytest.approx(40 / elapsed)


def test_a_checkpoint_with_the_old_batch_mean_sums_resumes_as_per_point_sums(tmp_path):
    """Checkpoints written before the per-point sums held [loss, *terms] as sums of batch means and no beta:
    they load as per-point sums (their batches were full), with the beta of the steps taken."""
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=1", "trainer.kl_warmup_epochs=2", "beta=2"])
    steps, _ = recorded_epochs(trainer)
    stop_after = 2
    step = trainer.train_step

    def two_steps_then_sigterm(x, beta, measure_grad_norm=False):
        out = step(x, beta, measure_grad_norm)
        if len(steps) == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    trainer.train_step = two_steps_then_sigterm
    with pytest.raises(Stop):
        trainer.fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    new_sums, names = state["epoch_sums"], state["term_names"]
    assert names[-1] == "beta" and state["progress"]["batch_in_epoch"] == stop_after
    old = dict(state, term_names=names[:-1],
               epoch_sums=torch.cat([new_sums[:len(names) - 1] / 10, new_sums[-2:]]))  # batches of 10
    resumed = tiny_trainer(tmp_path / "again", ["trainer.epochs=1", "trainer.kl_warmup_epochs=2", "beta=2"])
    resumed.load_state(old)
    assert resumed.term_names == names
    assert torch.allclose(resumed.epoch_sums, new_sums, rtol=1e-5)
    assert resumed.fit() == "completed"


def script_val_elbos(trainer: Trainer, values: list[float]) -> None:
    """The validation ELBOs the trainer sees, one an epoch: its early stopping without training to them."""
    scripted, schedule = iter(values), trainer.schedule

    class ScriptedSchedule:
        due = schedule.due

        def evaluate(self, *args, **kwargs):
            return {**schedule.evaluate(*args, **kwargs), "elbo": torch.tensor(next(scripted))}

    trainer.schedule = ScriptedSchedule()


def test_early_stopping_ends_after_patience_epochs_without_a_better_val_elbo_and_stays_ended_on_resume(tmp_path):
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=40", "trainer.patience=2"])
    script_val_elbos(trainer, [-10.0, -9.0, -8.0, -8.5, -8.1, -7.0, -6.0])  # best at epoch 3, then two worse epochs
    assert trainer.fit() == "completed"
    assert (trainer.progress.epoch, trainer.progress.best_epoch, trainer.progress.stopped_early) == (5, 3, True)
    assert stop_reason(trainer.progress, 40, 2).startswith("early stop at epoch 5: no better validation ELBO for 2 epochs")
    resumed = tiny_trainer(tmp_path / "again", ["trainer.epochs=40", "trainer.patience=2"])
    resumed.load_state(torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True))
    resumed.train_step = lambda *a, **k: pytest.fail("a run that stopped early trained again on resume")
    assert resumed.fit() == "completed" and resumed.progress.epoch == 5


def test_epochs_of_the_kl_warm_up_do_not_count_towards_patience(tmp_path):
    """As the VampPrior paper's code: its look-ahead counts no epoch of the warm-up, so a run whose
    validation ELBO peaked early still trains until beta has reached its value, then `patience` more."""
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=40", "trainer.patience=2", "trainer.kl_warmup_epochs=4"])
    script_val_elbos(trainer, [-7.0] + [-8.0] * 10)  # best at epoch 1, never better again
    trainer.fit()
    assert (trainer.progress.epoch, trainer.progress.best_epoch, trainer.progress.stopped_early) == (6, 1, True)
    assert stop_reason(trainer.progress, 40, 2, 4) == (
        "early stop at epoch 6: no better validation ELBO for 2 epochs (trainer.patience) after the KL warm-up "
        "ended, at epoch 4 (trainer.kl_warmup_epochs); the best at epoch 1")


def test_a_run_that_used_its_whole_budget_says_whether_it_was_still_improving(tmp_path):
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=2"])
    trainer.fit()
    reason = stop_reason(trainer.progress, 2, 0)
    assert reason.startswith("reached trainer.epochs=2; ") and "trainer.patience=0" in reason
    assert ("still improving" in reason) == (trainer.progress.best_epoch == 2)


def test_adamnormgrad_takes_adams_steps_on_each_tensors_gradient_divided_by_its_norm(tmp_path):
    """The VampPrior code's optimiser (trainer.optimizer=adamnormgrad): three updates equal torch's Adam
    on gradients g / (‖g‖ + 1e-7), tensor by tensor, and differ from Adam's on the raw gradients."""
    trainer = tiny_trainer(tmp_path, ["trainer.epochs=1", "trainer.optimizer=adamnormgrad"])
    model, x, beta = trainer.model, trainer.data.val, torch.ones(())
    twins = {normalise: copy.deepcopy(model) for normalise in (True, False)}
    optimisers = {normalise: torch.optim.Adam(twin.parameters(), lr=5e-4) for normalise, twin in twins.items()}
    for _ in range(3):
        state = torch.get_rng_state()  # every contender draws the same z
        for normalise, twin in twins.items():
            torch.set_rng_state(state)
            optimisers[normalise].zero_grad()
            trainer.objective(twin, x, beta, None)[0].mean().backward()
            for p in twin.parameters():
                p.grad = p.grad / (p.grad.norm() + 1e-7) if normalise else p.grad
            optimisers[normalise].step()
        torch.set_rng_state(state)
        trainer.step(x, beta)

    def same(a, b):
        return all(torch.allclose(p, q, rtol=0, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))
    assert same(model, twins[True])
    assert not same(model, twins[False])
