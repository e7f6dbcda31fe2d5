"""Every model trains with a mixture prior from the command line: the two-level model's KL is its
layers' KLs, the VampPrior's pseudo-inputs are drawn, and the warm-up's beta is logged."""

import pytest

from tests.conftest import TINY, read_metrics, run_cli, run_dirs
from tests.run.test_train_cli import events
from vaebench.metrics import elbo


@pytest.mark.parametrize("model,prior", [("hvae", "vamp"), ("mlp", "mog")])
def test_every_prior_and_model_trains(tmp_path, model, prior):
    run_cli(["train", *TINY, "trainer.epochs=1", f"model={model}", f"prior={prior}", "prior.K=5",
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
