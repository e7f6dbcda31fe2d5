"""Issue 37: a resumed run ends with the numbers of one that never stopped, also compiled by inductor
and on 2 threads, stopped at a step inside an epoch; a resume on fewer threads says what it costs.

Each run stops itself with SIGTERM right after a chosen step (`run_cli_stopped_after`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import read_metrics, run_cli, run_cli_stopped_after
from vaebench.run import checkpoint

# 480 training points in batches of 50: 10 steps an epoch, the last one of 30 points (two batch shapes,
# so two compiled graphs); the run stops after step 14, inside its second epoch.
STOP_AFTER_STEP = 14
RUN = ["trainer.epochs=2", "trainer.batch_size=50", "trainer.device=cpu", "model.latent_dim=4", "model.hidden_dim=16",
       "eval.iw_samples=8", "eval.gap_points=10", "trainer.threads=2"]
MODELS = {"mlp": ["model=mlp"], "conv": ["model=conv", "model.channels=4"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=(np.random.default_rng(3).random((600, 8, 8)) < 0.3).astype(np.float32))
    return path


def same_weights(a: Path, b: Path) -> bool:
    x, y = (checkpoint.load(d / "checkpoints" / "last.pt") for d in (a, b))
    assert x["step"] == y["step"] and x["model"].keys() == y["model"].keys()
    return all(torch.equal(x["model"][name], y["model"][name]) for name in x["model"])


def assert_same_run(resumed: Path, straight: Path) -> None:
    assert same_weights(resumed, straight)
    a, b = read_metrics(resumed), read_metrics(straight)
    assert a["status"] == b["status"] == "completed"
    for split in ("train", "val", "test"):
        assert a[split] == b[split], split


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """For each model and compile setting: a straight run, and one stopped after STOP_AFTER_STEP (kept as
    it stopped, for each test to copy and resume)."""
    made = {}

    def make(model: str, compile_: str, *extra: str) -> tuple[Path, Path]:
        if (model, compile_, *extra) not in made:
            root = tmp_path_factory.mktemp(f"{model}-{compile_}")
            args = [*RUN, *MODELS[model], "dataset=npz", f"dataset.path={data}", f"trainer.compile={compile_}", *extra]
            run_cli(["train", *args, f"hydra.run.dir={root / 'straight'}"], root)
            run_cli_stopped_after(STOP_AFTER_STEP, ["train", *args, f"hydra.run.dir={root / 'stopped'}"], root)
            progress = checkpoint.load(root / "stopped" / "checkpoints" / "last.pt")["progress"]
            assert (progress["step"], progress["epoch"], progress["batch_in_epoch"]) == (STOP_AFTER_STEP, 1, 4), progress
            made[model, compile_, *extra] = root / "straight", root / "stopped"
        return made[model, compile_, *extra]

    return make


def resumed_copy(stopped: Path, cwd: Path, *overrides: str) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = cwd / "resumed"
    shutil.copytree(stopped, run_dir)
    return run_dir, run_cli(["train", f"resume={run_dir}", *overrides], cwd=cwd)


@pytest.mark.parametrize("model", MODELS)
def test_a_compiled_run_on_two_threads_resumed_inside_an_epoch_ends_as_a_straight_run(model, runs, tmp_path):
    """Inductor's own kernels (trainer.compile=true, production's settings), 2 threads, stopped at a step
    inside an epoch: last.pt bit-identical, and every recorded term equal."""
    straight, stopped = runs(model, "true")
    assert checkpoint.load(stopped / "checkpoints" / "last.pt")["compile"]["compiled"] is True
    resumed, proc = resumed_copy(stopped, tmp_path)
    assert "Threads: 2 (trainer.threads=2)" in proc.stdout
    assert_same_run(resumed, straight)


def test_a_resume_on_fewer_threads_says_it_costs_nothing_where_the_step_does_not_depend_on_them(runs, tmp_path):
    """The MLP's step gives the same numbers at 1 and 2 threads (checked at the resume): bit-identical still."""
    straight, stopped = runs("mlp", "false")
    resumed, proc = resumed_copy(stopped, tmp_path, "trainer.threads=1")
    assert "This run started with 2 threads and resumes with 1: its training step gives the same numbers at any " \
           "thread count (checked), so nothing is lost." in proc.stdout
    assert same_weights(resumed, straight)


def test_a_resume_on_fewer_threads_says_what_it_costs_where_the_step_depends_on_them(runs, tmp_path):
    """The convolutions' sums depend on the thread count: the resume says from which step the run is no
    longer bit-identical, and how to keep it so; and indeed it is not."""
    straight, stopped = runs("conv", "false")
    resumed, proc = resumed_copy(stopped, tmp_path, "trainer.threads=1")
    said = ("This run started with 2 threads and resumes with 1: its numbers depend on the thread count (checked), "
            f"so from step {STOP_AFTER_STEP} on it is not bit-identical to a run that never stopped")
    assert said in proc.stdout and "trainer.threads=2 keeps it exact" in proc.stdout
    assert read_metrics(resumed)["threads"] == 1
    assert not same_weights(resumed, straight)
    (tmp_path / "own_count").mkdir()
    on_its_own_count, _ = resumed_copy(stopped, tmp_path / "own_count")
    assert_same_run(on_its_own_count, straight)  # on its own 2 threads the eager conv run resumes exactly too


def test_a_run_with_the_papers_optimizer_resumes_exactly_and_trains_otherwise_than_adam(runs, tmp_path):
    """trainer.optimizer=adamnormgrad (each tensor's gradient normalised before Adam) holds no state of
    its own: stopped inside an epoch, the run resumes to the numbers of one that never stopped; and it
    is not Adam's run."""
    straight, stopped = runs("mlp", "false", "trainer.optimizer=adamnormgrad")
    resumed, _ = resumed_copy(stopped, tmp_path)
    assert_same_run(resumed, straight)
    assert read_metrics(straight)["config"]["trainer"]["optimizer"] == "adamnormgrad"
    adams, _ = runs("mlp", "false")
    assert not same_weights(straight, adams)
