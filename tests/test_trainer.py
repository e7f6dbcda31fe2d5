"""The trainer's step sees the beta of the KL warm-up, step by step, in its loss."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from vaebench import elbo
from vaebench.board import Board
from vaebench.data import Dataset
from vaebench.models import build_model
from vaebench.train import config_dir
from vaebench.trainer import Trainer


@pytest.mark.parametrize("warmup_epochs", [0, 2])
def test_each_step_trains_with_the_warm_up_beta(tmp_path, warmup_epochs):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "model.hidden_dim=8", "model.latent_dim=2", "trainer.batch_size=10", "trainer.epochs=2",
            f"trainer.kl_warmup_epochs={warmup_epochs}", "beta=4", "eval.surgery_every=0"])
    torch.manual_seed(0)
    images = torch.rand(60, 1, 4, 4)
    data = Dataset("synthetic", images[:40], images[40:50].bernoulli(), images[50:].bernoulli(), dynamic_binarize=True)
    model = build_model(cfg, data.data_shape, data.train)
    trainer = Trainer(model, data, cfg, tmp_path, Board(tmp_path / "board"))
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
