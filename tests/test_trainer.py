"""The trainer's step: the beta of the KL warm-up, step by step, in its loss; bf16 activations."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from vaebench import elbo
from vaebench.board import Board
from vaebench.data import Dataset
from vaebench.components import build_model
from vaebench.train import config_dir  # also registers the config's resolvers
from vaebench.trainer import Trainer


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
