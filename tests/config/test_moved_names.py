"""A run saved before the package took the shape of its config tree names its components by their old
homes (`vaebench.data.mnist5k`, `vaebench.objectives.elbo.ELBO`): it resumes, evaluates and reports as
before. data/run_before_the_move is such a run, one epoch of a tiny VampPrior model on mnist5k, saved by
the vaebench of commit 6ed74f6."""

import csv
import shutil
from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from tests.conftest import read_metrics, run_cli
from vaebench.config.components import target_of
from vaebench.config.moved import MOVED_TARGETS
from vaebench.config.saved import saved_config
from vaebench.errors import UserError
from vaebench.run import checkpoint

BEFORE_THE_MOVE = Path(__file__).parent / "data" / "run_before_the_move"


def test_a_saved_config_names_its_components_by_their_homes_now():
    config = checkpoint.load(BEFORE_THE_MOVE / "checkpoints" / "last.pt")["config"]
    assert config["dataset"]["_target_"] == "vaebench.data.mnist5k"  # the run is what it claims to be
    assert config["objective"]["_target_"] == "vaebench.objectives.elbo.ELBO"
    today = saved_config(config)
    assert today["dataset"]["_target_"] == "vaebench.datasets.mnist5k"
    assert today["objective"]["_target_"] == "vaebench.objectives.ELBO"
    assert today["prior"]["_target_"] == "vaebench.priors.VampPrior"


@pytest.mark.parametrize("old", sorted(MOVED_TARGETS))
def test_every_moved_name_builds_what_it_built_before(old):
    """The new home holds the very component, and a config that still names the old home builds it."""
    component = target_of(OmegaConf.create({"_target_": old}), "dataset", "an old entry")
    assert component is get_object(MOVED_TARGETS[old])
    assert old.rsplit(".", 1)[1] == component.__name__


def test_a_run_saved_before_the_move_resumes_evaluates_and_reports(tmp_path):
    run_dir = tmp_path / "sweep" / "0"
    shutil.copytree(BEFORE_THE_MOVE, run_dir)
    resumed = run_cli(["train", f"resume={run_dir}", "trainer.epochs=2"], cwd=tmp_path)
    assert "Resuming" in resumed.stdout
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["config"]["choices"]["prior"] == "vamp"
    assert metrics["config"]["dataset"]["_target_"] == "vaebench.datasets.mnist5k"  # its record names today's homes

    evaluated = run_cli(["eval", str(run_dir), "eval.max_points=50", "eval.iw_samples=4"], cwd=tmp_path)
    assert "log_likelihood" in evaluated.stdout
    run_cli(["report", str(tmp_path / "sweep")], cwd=tmp_path)
    with (tmp_path / "sweep" / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["run"] for row in rows] == ["0"] and rows[0]["prior"] == "vamp" and rows[0]["K"] == "3"


def test_a_component_that_imports_an_old_module_hears_where_its_names_went(tmp_path, monkeypatch):
    (tmp_path / "my_old_model.py").write_text("from vaebench.nets import MLPEncoder\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError) as refused:
        target_of(OmegaConf.create({"_target_": "my_old_model.MLPEncoder"}), "model", "model=old")
    message = str(refused.value)
    assert "model=old" in message and "No module named 'vaebench.nets'" in message
    assert "vaebench's vaebench.nets has moved: import from vaebench.models" in message
