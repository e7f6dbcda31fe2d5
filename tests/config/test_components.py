"""Components from `_target_`: every shipped entry fits its class, values are checked against the
signatures that declare them, run-time arguments reach only the components that name them, and
runs saved before `_target_` still resume and evaluate."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Literal

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import read_metrics, run_cli
from vaebench.run import checkpoint
from vaebench.config.checks import Count, check_arguments
from vaebench.config.components import build, check_component
from vaebench.config.groups import GROUPS
from vaebench.config.saved import saved_config
from vaebench.errors import UserError
from vaebench.config.settings import SETTINGS
from vaebench.run.train import config_dir
from vaebench.config.validate import validate_config


def composed(*overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("group", GROUPS)
def test_every_shipped_entry_fits_the_class_it_names(group, tmp_path):
    entries = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
    assert entries
    (tmp_path / "x.npz").touch()  # a file must exist to be named (its content is read only when the data are built)
    for entry in entries:
        overrides = [f"{group}={entry}"] + ([f"dataset.path={tmp_path / 'x.npz'}"] if entry in ("npz", "dsprites") else [])
        check_component(composed(*overrides)[group], group, f"{group}={entry}")


def test_the_settings_files_hold_exactly_the_declared_settings():
    cfg = composed()
    validate_config(cfg)
    for where, settings in SETTINGS.items():
        if where is not None:
            assert set(cfg[where]) == {f.name for f in dataclasses.fields(settings)}, where


def laplace(latent_dim: int, K: Count = 3, kind: Literal["a", "b"] = "a", width: float | None = None):
    return latent_dim, K, kind, width


@pytest.mark.parametrize("entry,words", [
    ({"K": 0}, ["prior.K=0 is not allowed", "an integer >= 1"]),
    ({"kind": "c"}, ["prior.kind='c'", "one of a, b"]),
    ({"width": "wide"}, ["prior.width='wide'", "a finite number, or null"]),
    ({"depth": 2}, ["prior.depth is not an argument of", "laplace", "prior.K, prior.kind, prior.width"]),
    ({"latent_dim": 2}, ["prior.latent_dim cannot be set", "the run itself hands"]),
])
def test_a_value_that_does_not_fit_the_signature_is_refused_by_name(entry, words):
    with pytest.raises(UserError) as refused:
        check_arguments(OmegaConf.create(entry), "prior", laplace, ("latent_dim",), "prior=laplace")
    for word in words:
        assert word in str(refused.value)


def test_values_that_fit_pass_and_a_missing_one_is_asked_for():
    check_arguments(OmegaConf.create({"K": 5, "kind": "b", "width": None}), "prior", laplace, ("latent_dim",))
    with pytest.raises(UserError, match=r"dataset=npz needs dataset.path, which has no value: add dataset.path=VALUE"):
        check_component(composed("dataset=npz").dataset, "dataset", "dataset=npz")


def test_a_target_that_cannot_be_imported_names_the_entry():
    node = OmegaConf.create({"_target_": "no_such_module.Prior"})
    with pytest.raises(UserError, match=r"prior=mine: prior._target_=no_such_module.Prior cannot be imported"):
        check_component(node, "prior", "prior=mine")


def test_the_run_hands_a_component_only_the_arguments_it_names():
    node = OmegaConf.create({"_target_": "tests.config.test_components.laplace", "K": 7})
    assert build(node, "prior", latent_dim=4, encode=print, train_data=None) == (4, 7, "a", None)


def old_layout(config: dict) -> dict:
    """A config as vaebench saved it before `_target_`: `name` keys, no choices and no objective
    (the objective group came later: such a run trained the beta-ELBO)."""
    config = dict(config)
    choices = config.pop("choices")
    config.pop("objective")
    for group in (g for g in GROUPS if g != "objective"):
        entry = {k: v for k, v in config[group].items() if k != "_target_"}
        config[group] = {"name": choices[group], **entry}
    config["eval"] = {k: v for k, v in config["eval"].items() if k != "surgery_every"}  # a setting added later
    return config


def test_an_old_config_reads_as_today(tmp_path):
    today = OmegaConf.to_container(composed("prior=vamp", "model=conv"))
    today["choices"] = {"dataset": "mnist5k", "model": "conv", "prior": "vamp", "objective": "elbo"}
    assert saved_config(old_layout(today)) == {**today, "choices": today["choices"]}


def test_a_run_saved_before_targets_resumes_and_evaluates(tmp_path):
    # A one-epoch VampPrior run (tests/config/data), its config rewritten as the `name:` era saved it.
    run_dir = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "run_before_the_move", run_dir)
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        state = checkpoint.load(path)
        state["config"] = old_layout(state["config"])
        torch.save(state, path)
    run_cli(["train", f"resume={run_dir}", "trainer.epochs=2"], cwd=tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["config"]["choices"]["prior"] == "vamp"
    proc = run_cli(["eval", str(run_dir), "eval.max_points=50", "eval.iw_samples=4"], cwd=tmp_path)
    assert "log_likelihood" in proc.stdout
