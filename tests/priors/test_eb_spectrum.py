"""The empirical-Bayes spectrum end to end: the experiment composes into the axis' runs, the frozen
VampPrior keeps its pseudo-inputs at training points, and `vaebench report` draws the axis."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import TINY, read_metrics, run_cli, run_dirs
from vaebench.config.saved import config_dir
from vaebench.datasets import fixed_binarization, mnist5k

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = [o for o in TINY if not o.startswith("trainer.epochs=")] + [
    "trainer.epochs=1", "trainer.batch_size=500", "dataset.val_size=100", "dataset.test_size=100"]
# spectrum choice -> (prior class, K, learn_inputs, init) as the issue lists the axis
AXIS = {
    "0_standard": ("StandardPrior", None, None, None),
    "1_mog": ("MixturePrior", 500, None, None),
    "2_vamp_K1": ("VampPrior", 1, True, "random"),
    "3_vamp_K10": ("VampPrior", 10, True, "random"),
    "4_vamp_K100": ("VampPrior", 100, True, "random"),
    "5_vamp_K500": ("VampPrior", 500, True, "random"),
    "6_data_K500": ("VampPrior", 500, False, "data"),
    "7_aggregate": ("AggregatePosteriorPrior", None, None, None),
}


def test_the_experiment_composes_into_the_eight_places_of_the_axis_on_mnist5k():
    with initialize_config_dir(config_dir(), version_base="1.3"):
        sweep = compose("config", overrides=["+experiment=eb_spectrum"], return_hydra_config=True)
        points = str(sweep.hydra.sweeper.params.spectrum).split(",")
        assert points == list(AXIS) == sorted(p.stem for p in (Path(config_dir()) / "spectrum").glob("*.yaml"))
        for point, (target, k, learn_inputs, init) in AXIS.items():
            cfg = compose("config", overrides=["+experiment=eb_spectrum", f"spectrum={point}"])
            prior = OmegaConf.to_container(cfg.prior)
            assert prior["_target_"].rsplit(".", 1)[1] == target
            assert prior.get("K") == k and prior.get("learn_inputs") == learn_inputs and prior.get("init") == init
            # the same data, model (the paper's gated MLP) and seed for every place, each trained to convergence
            # at the paper's protocol (its 100-epoch warm-up and 50-epoch look-ahead)
            assert (cfg.dataset._target_, cfg.model._target_, cfg.model.gated, cfg.seed, cfg.trainer.epochs,
                    cfg.trainer.patience, cfg.trainer.kl_warmup_epochs, cfg.beta) == (
                "vaebench.datasets.mnist5k", "vaebench.models.MLPVAE", True, 0, 2000, 50, 100, 1.0)
        other = compose("config", overrides=["+experiment=eb_spectrum", "spectrum=7_aggregate", "dataset=fashion_mnist"])
        assert other.dataset._target_ == "vaebench.datasets.fashion_mnist"


def test_the_frozen_vampprior_keeps_its_pseudo_inputs_at_training_points(tmp_path):
    """prior.init=data prior.learn_inputs=false: after training, every pseudo-input is still one of the
    training points as evaluation scores them (one fixed binarisation), and the encoder did train."""
    run_cli(["train", "prior=vamp", "prior.K=6", "prior.init=data", "prior.learn_inputs=false", *SMALL], tmp_path)
    (run,) = run_dirs(tmp_path)
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]
    inputs = last["prior.unclamped_inputs"].flatten(1)
    train = fixed_binarization(mnist5k(seed=0, val_size=100, test_size=100).train).flatten(1)
    distance = torch.cdist(inputs, train, p=float("inf")).min(1).values
    assert float(distance.max()) == 0.0  # exactly training points, each within the clamp's range
    assert read_metrics(run)["status"] == "completed"


@pytest.fixture(scope="module")
def axis_sweep(tmp_path_factory) -> tuple[Path, str]:
    """Three places of the axis, one epoch each: the standard prior, a learned VampPrior, K = N."""
    root = tmp_path_factory.mktemp("axis")
    run_cli(["train", "-m", "+experiment=eb_spectrum", "spectrum=0_standard,2_vamp_K1,7_aggregate", *SMALL], root)
    (sweep,) = (root / "outputs" / "multirun").glob("*/*")
    proc = run_cli(["report", str(sweep)], root)
    return sweep, proc.stdout


def test_the_aggregate_prior_run_reports_no_marginal_kl_on_its_training_split(axis_sweep):
    sweep, _ = axis_sweep
    by_prior = {read_metrics(run)["config"]["choices"]["prior"]: read_metrics(run) for run in run_dirs(sweep.parents[3])}
    assert set(by_prior) == {"standard", "vamp", "aggregate"}
    train = by_prior["aggregate"]["train"]
    assert abs(train["marginal_kl"]) < 1e-3 and train["mutual_info_max"] == pytest.approx(torch.log(torch.tensor(4800.)).item())
    for metrics in by_prior.values():  # the surgery on the training split, for every prior
        assert {"mutual_info", "mutual_info_se", "marginal_kl", "marginal_kl_se"} <= set(metrics["train"])
    assert by_prior["standard"]["train"]["marginal_kl"] > 4 * by_prior["standard"]["train"]["marginal_kl_se"]


def test_the_hparams_name_each_runs_place_on_the_axis(axis_sweep):
    """TensorBoard's HParams table tells the places apart by name (6_data_K500 and 5_vamp_K500 share prior and K)."""
    from tests.run.test_sweeps import board, session_hparams, shown_hparams

    sweep, _ = axis_sweep
    places = {session_hparams(board(run))["spectrum"] for run in run_dirs(sweep.parents[3])}
    assert places == {"0_standard", "2_vamp_K1", "7_aggregate"}
    # the sweep's axis is among the columns TensorBoard shows, though "spectrum" is last by name
    assert all(shown_hparams(board(run))[0] == "spectrum" for run in run_dirs(sweep.parents[3]))


def test_the_report_draws_the_axis_and_tabulates_it_left_to_right(axis_sweep):
    sweep, stdout = axis_sweep
    assert (sweep / "prior_axis.png").read_bytes()[:8] == PNG_SIGNATURE
    markdown = (sweep / "report.md").read_text()
    assert "![prior_axis](prior_axis.png)" in markdown
    table = markdown.split("## The empirical-Bayes axis", 1)[1].split("## Paired", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == [
        "standard N(0, I)", "VampPrior, learned pseudo-inputs", "aggregate posterior (all training points)"]
    assert rows[-1].split("|")[2].strip() == "N = 4,800"
    assert "## The empirical-Bayes axis" in stdout
