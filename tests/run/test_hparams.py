"""HParams from a composed config: every setting the command line gave that applies to the run is a
column (trainer.*, eval.*, seed included); the TensorBoard name stays short."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from tensorboard.plugins.hparams import plugin_data_pb2

from vaebench.run.naming import board_name, hparams
from vaebench.run.train import config_dir, with_choices


def hparam_values(accumulator) -> dict:
    """The hyperparameters of a run's HParams session, read back from its event file."""
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in values.items()}


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    cfg = with_choices(cfg, choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def columns(overrides: list[str], prior=None, axes=frozenset()):
    cfg = composed(overrides)
    model = SimpleNamespace(prior=prior or SimpleNamespace())
    return hparams(cfg, dict(cfg.choices), model, overrides, axes)


COMMAND_LINE = ["trainer.epochs=3", "eval.iw_samples=50", "eval.batch_size=100", "trainer.batch_size=64", "seed=3",
                "beta=4", "prior=standard", "prior.K=5", "model.hidden_dim=16", "trainer.device=cpu", "dataset=mnist",
                "dataset.root=/somewhere"]


def test_every_setting_the_command_line_gave_is_a_column():
    params, _ = columns(COMMAND_LINE)
    assert params == {"prior": "standard", "K": "-", "beta": 4.0, "objective": "elbo", "epochs": "3",
                      "eval.iw_samples": "50", "eval.batch_size": "100", "batch_size": "64", "seed": "3",
                      "hidden_dim": "16", "device": "cpu", "dataset": "mnist"}  # not where the data lies


def test_the_name_stays_what_the_run_is():
    cfg = composed(COMMAND_LINE)
    assert board_name(cfg, COMMAND_LINE) == "beta=4,dataset=mnist,model.hidden_dim=16,prior=standard,seed=3,trainer.batch_size=64"


@pytest.mark.parametrize("axis, column", [("eval.iw_samples", "eval.iw_samples"), ("trainer.epochs", "epochs"),
                                          ("seed", "seed"), ("prior.K", "K"), ("beta", "beta")])
def test_a_sweep_axis_is_marked_as_varied_under_its_column(axis, column):
    params, varied = columns(COMMAND_LINE, prior=SimpleNamespace(K=5), axes={axis})
    assert varied == {column} and column in params


def test_two_settings_ending_alike_keep_two_columns():
    params, varied = columns(["model.hidden_dim=16", "+extra.hidden_dim=8"], axes={"extra.hidden_dim"})
    assert params["hidden_dim"] == "16" and params["extra.hidden_dim"] == "8"
    assert varied == {"extra.hidden_dim"}
