"""docs/components.md ("Your own prior, model or dataset", linked from README), run as written from a
folder outside the package: the files are read from the page itself, so the example and this test
cannot drift apart."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import TINY, board_dir, read_metrics, run_cli, run_dirs

PAGE = Path(__file__).resolve().parents[2] / "docs" / "components.md"
EVERY_TERM = ("elbo", "reconstruction", "kl", "log_joint", "entropy", "mutual_info", "marginal_kl",
              "total_correlation", "dimwise_kl", "active_units")


def readme_examples() -> dict[str, str]:
    """Each fenced block that follows a marker `<!-- example:NAME -->` in docs/components.md, by NAME."""
    pattern = re.compile(r"<!-- example:(\S+) -->\n```\w*\n(.*?)```", re.S)
    return {name: body for name, body in pattern.findall(PAGE.read_text())}


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("my_project")
    for name, body in readme_examples().items():
        if name != "command":
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(body)
    return folder


def readme_command() -> list[str]:
    (line,) = readme_examples()["command"].strip().splitlines()
    words = shlex.split(line)
    assert words[:2] == ["vaebench", "train"]
    return words[1:]


def test_the_readme_names_the_files_it_shows():
    examples = readme_examples()
    assert {"my_components.py", "my_conf/prior/laplace.yaml", "command"} <= set(examples)
    for name, body in examples.items():
        if name != "command":
            assert name in body.splitlines()[0], f"the block for {name} should say its file name first"


def test_readme_shows_the_pages_command():
    readme = (PAGE.parents[1] / "README.md").read_text()
    assert readme_examples()["command"].strip() in readme


def test_a_prior_of_ones_own_trains_and_logs_every_term(user_folder):
    proc = run_cli([*readme_command(), *TINY], cwd=user_folder)
    (run_dir,) = run_dirs(user_folder)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    assert metrics["config"]["choices"]["prior"] == "laplace"
    assert metrics["config"]["prior"]["_target_"] == "my_components.LaplacePrior"
    for term in EVERY_TERM:  # the Laplace prior is factorised: the dimension-wise KL too
        assert term in metrics["val"], term
    assert "log_likelihood" in metrics["test"]
    assert metrics["val"]["kl"] == pytest.approx(metrics["val"]["reconstruction"] - metrics["val"]["elbo"], abs=1e-3)
    assert "prior=laplace" in proc.stdout

    board = EventAccumulator(str(board_dir(run_dir)), size_guidance={"images": 1})
    board.Reload()
    content = board.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["prior"].string_value == "laplace"
    assert {"train/elbo", "val/dimwise_kl"} <= set(board.Tags()["scalars"])
    assert "visuals/prior_samples" in board.Tags()["images"]


def test_a_sweep_of_ones_own_prior_reaches_the_report(user_folder):
    args = readme_command()
    sweep = ["train", "-m", *[a for a in args[1:] if not a.startswith(("prior=", "beta="))],
             "prior=standard,laplace", "beta=1", *TINY, "trainer.epochs=1"]
    run_cli(sweep, cwd=user_folder)
    (sweep_dir,) = (user_folder / "outputs" / "multirun").glob("*/*")
    out = run_cli(["report", str(sweep_dir)], cwd=user_folder).stdout
    assert "laplace" in out and "standard" in out
    assert "laplace" in (sweep_dir / "report.csv").read_text()


def test_a_model_and_a_dataset_of_ones_own_train(user_folder, tmp_path):
    proc = run_cli(["train", "--config-dir", str(user_folder / "my_conf"), "dataset=bars", "model=linear",
                    "prior=laplace", "model.latent_dim=3", "model.hidden_dim=16", "trainer.epochs=1",
                    "eval.iw_samples=8", "trainer.device=cpu"], cwd=user_folder)
    assert "model=linear with prior=laplace" in proc.stdout and "dataset=bars" in proc.stdout
    run_dir = max(run_dirs(user_folder), key=lambda d: d.stat().st_mtime)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["config"]["choices"]["model"] == "linear"
    assert metrics["val"]["kl"] > 0


def test_ones_own_component_is_refused_clearly_when_it_does_not_fit(user_folder):
    conf = str(user_folder / "my_conf")
    cases = {
        ("prior=laplace", "prior.scale=wide"): ["prior.scale='wide'", "a finite number"],
        ("prior=laplace", "+prior.shape=2"): ["prior.shape is not an argument of my_components.LaplacePrior",
                                              "prior=laplace", "prior.scale"],
        ("prior=laplace", "prior._target_=my_components.CauchyPrior"): ["prior=laplace", "my_components.CauchyPrior",
                                                                        "cannot be imported"],
        ("prior=laplaec",): ["prior=laplaec", "laplace", "standard"],
    }
    for overrides, words in cases.items():
        proc = run_cli(["train", "--config-dir", conf, *overrides, *TINY], cwd=user_folder, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (message,) = [line for line in proc.stderr.splitlines() if line.startswith("vaebench: ")]
        for word in words:
            assert word in message, f"{word!r} not in {message!r}"
