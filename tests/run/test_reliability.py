"""Issue 5, reliability: bad input is refused, divergence and interruption stop cleanly, resume is exact,
checkpoints are atomic and safe to load. Everything runs through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, read_metrics, run_cli, run_dirs
from vaebench.run import checkpoint
from vaebench.errors import UserError

# Enough steps per epoch (1,600 / 8) that a SIGTERM sent when training starts lands inside epoch 1.
STEPS_PER_EPOCH = 200
LONG_EPOCH = ["trainer.batch_size=8", "trainer.epochs=2", "eval.iw_samples=4"]


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_process():
    """Tiny models gain nothing from threads, and several runs at once on a 2-core machine slow each
    other down severalfold when each spins up its own pool. Every comparison uses this same setting."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


def write_npz(path: Path, n: int = 300, **arrays) -> Path:
    """Random binary 8x8 images unless `arrays` says otherwise."""
    if not arrays:
        arrays = {"x": (np.random.default_rng(0).random((n, 8, 8)) < 0.3).astype(np.float32)}
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    x = (np.random.default_rng(1).random((300, 8, 8)) < 0.3).astype(np.float32)
    write_npz(folder / "ok.npz")
    write_npz(folder / "big.npz", n=2000)
    write_npz(folder / "no_x.npz", images=x)
    write_npz(folder / "five_d.npz", x=np.zeros((10, 2, 2, 2, 2), np.float32))
    write_npz(folder / "nan.npz", x=np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x))
    write_npz(folder / "counts.npz", x=x * 3.0)
    write_npz(folder / "object_labels.npz", x=x, y=np.array([{"digit": 1}] * len(x), dtype=object))
    write_npz(folder / "short_labels.npz", x=x, y=np.arange(10))
    return folder


def npz(data_dir: Path, name: str) -> list[str]:
    return ["dataset=npz", f"dataset.path={data_dir / name}"]


# id -> (overrides, words the one-paragraph message must contain)
BAD_INPUT = {
    "unknown prior": (["prior=vampp"], ["prior=vampp", "mog, standard, vamp"]),
    "a sweeper that is not installed": (["hydra/sweeper=optuan"], ["hydra/sweeper=optuan", 'pip install -e ".[sweep]"']),
    "typo'd key": (["trainer.epoch=3"], ["trainer.epoch is not a config key", "Did you mean trainer.epochs?"]),
    "key of another prior": (["prior=standard", "prior.init=data"], ["prior.init", "prior=standard", "prior.K"]),
    "negative beta": (["beta=-1"], ["beta=-1", ">= 0"]),
    "infinite beta": (["beta=inf"], ["beta=inf", "finite"]),
    "K below 1": (["prior=vamp", "prior.K=0"], ["prior.K=0", ">= 1"]),
    "latent_dim below 1": (["model.latent_dim=0"], ["model.latent_dim=0", ">= 1"]),
    "batch_size below 1": (["trainer.batch_size=0"], ["trainer.batch_size=0", ">= 1"]),
    "negative epochs": (["trainer.epochs=-1"], ["trainer.epochs=-1", ">= 0"]),
    "word for a number": (["trainer.lr=fast"], ["trainer.lr='fast'", "number"]),
    "npz without a path": (["dataset=npz"], ["dataset=npz", "dataset.path"]),
    "missing npz": ("missing.npz", ["dataset.path=", "missing.npz", "must be the path of an existing file"]),
    "npz without x": ("no_x.npz", ["no_x.npz", "no array `x`", "images"]),
    "npz of the wrong shape": ("five_d.npz", ["five_d.npz", "(10, 2, 2, 2, 2)"]),
    "npz with NaN": ("nan.npz", ["nan.npz", "NaN"]),
    "npz with object labels": ("object_labels.npz", ["object_labels.npz", "`y`", "integer label"]),
    "npz with too few labels": ("short_labels.npz", ["short_labels.npz", "`y`", "10 entries where `x` has 300"]),
    "npz outside [0,1], binarised": ("counts.npz", ["counts.npz", "dataset.binarize=dynamic", "[0, 1]"]),
    "npz outside [0,1], bernoulli": ("counts.npz none", ["model.likelihood=bernoulli", "[0, 1]"]),
    "cuda without a GPU": (["trainer.device=cuda"], ["trainer.device=cuda", "trainer.device=cpu"]),
    "resume without a checkpoint": ("resume", ["resume=", "checkpoints/last.pt"]),
    "a config folder that is not there": (["--config-dir", "no_such_conf", "prior=laplace"],
                                          ["--config-dir no_such_conf: there is no such folder"]),
    "a target that cannot be imported": (["prior._target_=no_such_module.Prior"],
                                         ["prior._target_=no_such_module.Prior cannot be imported", "No module named"]),
}


def _overrides(case, data_dir: Path, root: Path) -> list[str]:
    if case == "resume":
        (root / "not_a_run").mkdir()
        return [f"resume={root / 'not_a_run'}"]
    if isinstance(case, str):  # an npz file name, optionally with dataset.binarize=none
        name, *none = case.split()
        return npz(data_dir, name) + (["dataset.binarize=none"] if none else [])
    return case


@pytest.fixture(scope="module")
def refusals(data_dir, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every bad input at once: each is a separate process, and most of its time is importing torch."""
    def refuse(name: str) -> subprocess.CompletedProcess:
        root = tmp_path_factory.mktemp("bad")
        # The good settings come first: Hydra keeps the last value of a key.
        args = ["train", *TINY, *_overrides(BAD_INPUT[name][0], data_dir, root)]
        return run_cli(args, cwd=root, check=False), root

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(BAD_INPUT, pool.map(refuse, BAD_INPUT)))


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_is_refused_in_one_paragraph(name, refusals):
    if name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc, root = refusals[name]
    assert proc.returncode == 2, proc.stderr
    assert not (root / "outputs").exists()  # a refused command leaves nothing behind
    assert "Traceback" not in proc.stderr + proc.stdout
    message = [line for line in proc.stderr.splitlines() if line.startswith("vaebench: ")]
    assert len(message) == 1, proc.stderr  # one paragraph, on one line
    assert [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()] == message  # and nothing else
    for word in BAD_INPUT[name][1]:
        assert word in message[0], f"{word!r} not in {message[0]!r}"


def test_a_sweep_records_a_bad_run_as_failed_goes_on_and_says_so_at_its_end(tmp_path, data_dir):
    """What only the run can find (here: a NaN inside the data file) fails that run, not the sweep."""
    paths = f"{data_dir / 'nan.npz'},{data_dir / 'ok.npz'}"
    proc = run_cli(["train", "-m", *TINY, "dataset=npz", f"dataset.path={paths}", "trainer.epochs=1"], cwd=tmp_path,
                   check=False)
    failed, completed = (read_metrics(d) for d in run_dirs(tmp_path))
    assert failed["status"] == "failed" and "nan.npz" in failed["error"] and "NaN" in failed["error"]
    assert completed["status"] == "completed"
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1
    summary = proc.stderr[proc.stderr.index("1 run of this sweep did not complete"):]
    assert str(run_dirs(tmp_path)[0]) in summary and "failed: dataset.path=" in summary


def test_a_sweep_with_a_bad_setting_is_refused_before_any_run(tmp_path, data_dir):
    """A setting's value, and a vaebench component's, is checked on the command line, each value of a sweep."""
    proc = run_cli(["train", "-m", *TINY, *npz(data_dir, "ok.npz"), "trainer.epochs=1", "beta=1,-1"], cwd=tmp_path,
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "beta=-1 is not allowed: beta must be a finite number >= 0." in proc.stderr
    proc = run_cli(["train", "-m", *TINY, *npz(data_dir, "ok.npz"), "prior=mog", "prior.K=2,0"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "prior.K=0 is not allowed: prior.K must be an integer >= 1." in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_divergence_stops_with_remedies_and_keeps_a_good_last_pt(tmp_path, data_dir):
    proc = run_cli(["train", *TINY, *npz(data_dir, "ok.npz"), "trainer.lr=1e6", "trainer.epochs=3"],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    bad_step = int(re.search(r"NaN/inf at step (\d+)", proc.stderr).group(1))
    assert "trainer.lr" in proc.stderr and "kl_warmup_epochs" in proc.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert read_metrics(run_dir)["status"] == "diverged"
    assert f"NaN/inf at step {bad_step}" in (run_dir / "train.log").read_text()  # the run folder says why it stopped
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert state["step"] < bad_step
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_truncated_checkpoint_gives_a_clear_error_naming_the_file(tmp_path, straight_run):
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes((straight_run / "checkpoints" / "last.pt").read_bytes()[:4000])
    proc = run_cli(["train", f"resume={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"Cannot read the checkpoint {last}" in proc.stderr and "truncated" in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()  # a failed resume leaves the folder as it was


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_with_code_is_refused_and_not_run(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "code_ran"
    torch.save({"model": _RunsCode(marker)}, path)
    with pytest.raises(UserError, match=re.escape(str(path))):
        checkpoint.load(path)
    assert not marker.exists()


def test_a_write_that_dies_midway_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    old = {"model": {"w": torch.arange(3.0)}, "optimizer": {}, "epoch": 1, "step": 10, "config": {}}
    checkpoint.save_atomic(old, path)

    def dies_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError):
        checkpoint.save_atomic({**old, "step": 20}, path)
    assert checkpoint.load(path)["step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no half-written file left beside it


# -- exact resume --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("straight")
    run_cli(["train", *TINY, *npz(data_dir, "big.npz"), *LONG_EPOCH], cwd=root)
    (run_dir,) = run_dirs(root)
    return run_dir


def assert_same_run(resumed: Path, straight: Path) -> None:
    a, b = (checkpoint.load(d / "checkpoints" / "last.pt") for d in (resumed, straight))
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), f"{name} differs"
    resumed_metrics, straight_metrics = read_metrics(resumed), read_metrics(straight)
    assert resumed_metrics["status"] == "completed"
    for split in ("train", "val", "test"):
        assert resumed_metrics[split] == straight_metrics[split]


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen([sys.executable, "-m", "vaebench.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared:\n{proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.005)


def test_sigterm_mid_epoch_then_resume_matches_a_straight_run(tmp_path, data_dir, straight_run):
    run_dir = tmp_path / "run"
    proc = start_cli(["train", *TINY, *npz(data_dir, "big.npz"), *LONG_EPOCH, f"hydra.run.dir={run_dir}"], tmp_path)
    try:
        wait_for(run_dir / "checkpoints" / "last.pt", proc)  # written as training starts, before the first step
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the test failed before the run ended: leave no process behind
            proc.kill()
            proc.communicate()

    assert proc.returncode == 130 and "Traceback" not in stderr
    assert f"Resume with:  vaebench train resume={run_dir}" in stderr
    assert read_metrics(run_dir)["status"] == "interrupted"
    progress = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]
    assert progress["epoch"] == 0 and 0 < progress["batch_in_epoch"] < STEPS_PER_EPOCH, progress  # mid-epoch 1

    other_batch = run_cli(["train", f"resume={run_dir}", "trainer.batch_size=16"], cwd=tmp_path, check=False)
    assert other_batch.returncode == 2 and "trainer.batch_size=8" in other_batch.stderr  # would skip or repeat points

    resumed = run_cli(["train", f"resume={run_dir}"], cwd=tmp_path)
    assert "Resuming" in resumed.stdout
    assert_same_run(run_dir, straight_run)


def test_resume_at_an_epoch_boundary_matches_a_straight_run(tmp_path, data_dir, straight_run):
    run_cli(["train", *TINY, *npz(data_dir, "big.npz"), *LONG_EPOCH, "trainer.epochs=1"], cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    run_cli(["train", f"resume={run_dir}", "trainer.epochs=2"], cwd=tmp_path)
    assert_same_run(run_dir, straight_run)


# `vaebench train ARGS`, as the CLI runs it, with a SIGTERM sent to itself as the test log p(x) has kept
# its BLOCKS-th block of points: a cluster's SIGTERM at a known point of the estimate, on any machine.
SIGTERM_DURING_LOG_LIKELIHOOD = """
import os, signal, sys
from vaebench.run.final_evaluation import EvaluationRecord
keep, blocks = EvaluationRecord.keep_partial, {blocks}
def keep_then_stop(self, partial):
    keep(self, partial)
    if len(partial["log_px"]) == blocks:
        os.kill(os.getpid(), signal.SIGTERM)
EvaluationRecord.keep_partial = keep_then_stop
from vaebench.cli import main
main(sys.argv[1:])
"""


def test_a_final_evaluation_stopped_in_its_log_likelihood_resumes_where_it_stopped(tmp_path, data_dir):
    """SIGTERM during the test log p(x): the splits' terms and the points done are kept, the resumed run
    goes on from them, and it ends with the numbers of an evaluation that never stopped."""
    run_dir = tmp_path / "run"
    long_estimate = [*TINY, *npz(data_dir, "big.npz"), "eval.iw_samples=2000"]  # 200 test points, one a block
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SIGTERM_DURING_LOG_LIKELIHOOD.format(blocks=50), "train", *long_estimate,
                           f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    stderr = proc.stderr
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert "checkpoints/final_evaluation.pt" in stderr and read_metrics(run_dir)["status"] == "interrupted"

    resumed = run_cli(["train", f"resume={run_dir}"], cwd=tmp_path)
    going_on = re.search(r"every term and the surgery of train, val, test are done; test log p\(x\) goes on from "
                         r"(\d+) of 200 points", resumed.stdout)
    assert going_on and 0 < int(going_on.group(1)) < 200, resumed.stdout
    final = read_metrics(run_dir)
    assert final["status"] == "completed" and not (run_dir / "checkpoints" / "final_evaluation.pt").exists()

    run_cli(["eval", str(run_dir), "eval.split=test"], cwd=tmp_path)  # the same estimate, never stopped
    (written,) = (run_dir / "evals").glob("test_best_200points_2000iw.json")
    never_stopped = json.loads(written.read_text())["test"]
    for term in ("log_likelihood", "elbo_iw", "posterior_kl", "mutual_info", "kl"):
        assert final["test"][term] == pytest.approx(never_stopped[term], abs=1e-5), term
