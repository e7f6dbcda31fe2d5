"""`vaebench train` and `vaebench eval` end to end, through the real command line."""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY, board_dir, read_metrics, run_cli, run_dirs
from tests.run.test_hparams import hparam_values
from tests.views.test_board import tag_groups

TERMS = ("elbo", "reconstruction", "kl", "loss", "log_joint", "entropy", "elbo_bits_per_dim")
SURGERY = ("mutual_info", "marginal_kl", "total_correlation", "dimwise_kl", "active_units")


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(board_dir(run_dir)), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("train")
    proc = run_cli(["train", *TINY], cwd=root)
    (run_dir,) = run_dirs(root)
    return run_dir, proc


def test_a_run_logs_every_term_for_train_and_val(trained):
    run_dir, proc = trained
    tags = events(run_dir).Tags()
    for split in ("train", "val"):
        for term in TERMS:
            assert f"{split}/{term}" in tags["scalars"], f"{split}/{term} missing"
        assert f"{split}/kl_per_dim" in tags["histograms"]
    for tag in ("train/beta", "train/lr", "train/grad_norm", "train/samples_per_s", *(f"val/{t}" for t in SURGERY)):
        assert tag in tags["scalars"], tag
    assert {"visuals/reconstructions", "visuals/prior_samples"} <= set(tags["images"])
    assert f"tensorboard --logdir {run_dir}" in proc.stdout


def test_tensorboard_opens_on_the_curves_and_keeps_the_final_values_in_the_run(trained):
    run_dir, _ = trained
    board = events(run_dir)
    tags = board.Tags()
    assert tag_groups([*tags["scalars"], *tags["histograms"], *tags["images"]])[:4] == ["train", "val", "verdict", "visuals"]
    # one TensorBoard run: the final values share its name and colour
    assert {p.parent for p in run_dir.rglob("events.out.tfevents.*")} == {board_dir(run_dir)}
    metrics, last_step = read_metrics(run_dir), board.Scalars("val/elbo")[-1].step
    for tag in ("test/log_likelihood", "test/elbo", "val/elbo", "train/mutual_info", "train/marginal_kl"):
        split, term = tag.split("/")
        (point,) = board.Scalars(f"verdict/final/{tag}")  # one dot, at the run's last step, not a curve
        assert point.step == last_step and point.value == pytest.approx(metrics[split][term], abs=1e-4)
        assert tag not in tags["scalars"] or len(board.Scalars(tag)) == 2  # the curves keep their epochs
    assert not [tag for tag in tags["scalars"] if tag.startswith("test/")]
    # HParams: every setting the command line gave, as a column
    assert hparam_values(board) == {"prior": "standard", "K": "-", "beta": 1.0, "objective": "elbo", "epochs": "2",
                                    "hidden_dim": "16", "latent_dim": "4", "eval.iw_samples": "8", "device": "cpu"}


def test_the_run_folder_keeps_what_the_console_showed_with_times(trained):
    run_dir, proc = trained
    assert "epoch    2/2" in proc.stdout and "[" not in proc.stdout.splitlines()[0]  # plain on the console
    log = (run_dir / "train.log").read_text()
    epoch_lines = [line for line in log.splitlines() if "val elbo" in line]
    assert len(epoch_lines) == 2 and all(re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in epoch_lines)
    assert "Final terms" in log and f"tensorboard --logdir {run_dir}" in log


def test_a_run_writes_checkpoints_and_metrics(trained):
    run_dir, _ = trained
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    for split in ("train", "val", "test"):
        values = metrics[split]
        assert values["elbo"] == pytest.approx(values["reconstruction"] - values["kl"], abs=1e-3)
        assert values["kl"] >= 0
    test = metrics["test"]  # the posterior KL and the IS ELBO come from the log-likelihood's own samples
    assert test["posterior_kl"] == pytest.approx(test["log_likelihood"] - test["elbo_iw"], abs=1e-4)
    assert metrics["val"]["mutual_info"] <= metrics["val"]["mutual_info_max"]
    estimates = ("elbo", "reconstruction", "kl", "mutual_info", "marginal_kl", "total_correlation", "dimwise_kl")
    for split, terms in (("val", estimates), ("test", (*estimates, "log_likelihood", "posterior_kl", "elbo_iw"))):
        for term in terms:  # every estimate carries its standard error beside it
            assert metrics[split][f"{term}_se"] > 0, (split, term)
    assert "active_units_se" not in metrics["val"] and "mutual_info_max_se" not in metrics["val"]
    assert metrics["val"]["active_units"] == int(metrics["val"]["active_units"])
    assert metrics["config"]["model"]["latent_dim"] == 4
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "epoch", "step", "rng", "config"} <= set(state)


def test_resume_continues_the_same_run_and_its_steps(tmp_path):
    run_cli(["train", *TINY, "trainer.epochs=1"], cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    proc = run_cli(["train", f"resume={run_dir}", "trainer.epochs=2"], cwd=tmp_path)
    assert "Resuming" in proc.stdout
    assert run_dirs(tmp_path) == [run_dir]  # no new folder
    assert read_metrics(run_dir)["epochs"] == 2
    steps = [event.step for event in events(run_dir).Scalars("val/elbo")]
    assert steps == sorted(set(steps)) and len(steps) == 2 and steps[1] == 2 * steps[0]
    assert json.loads((run_dir / "metrics.json").read_text())["config"]["model"]["latent_dim"] == 4


def test_multirun_makes_one_folder_per_run(tmp_path):
    run_cli(["train", "-m", *TINY, "trainer.epochs=1", "beta=1,4"], cwd=tmp_path)
    runs = run_dirs(tmp_path)
    assert len(runs) == 2 and all("multirun" in str(r) for r in runs)
    assert sorted(read_metrics(r)["config"]["beta"] for r in runs) == [1.0, 4.0]


def test_npz_dataset(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", x=(rng.random((120, 12, 12)) * 255).astype(np.uint8), y=rng.integers(0, 3, 120))
    run_cli(["train", *TINY, "trainer.epochs=1", "dataset=npz", "dataset.path=toy.npz", "model=conv"], cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    assert metrics["config"]["choices"]["dataset"] == "npz"


def test_bf16_on_a_cpu_says_it_trains_in_fp32(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", x=(rng.random((60, 4, 4)) * 255).astype(np.uint8))
    proc = run_cli(["train", *TINY, "trainer.epochs=1", "dataset=npz", "dataset.path=toy.npz", "trainer.precision=bf16"],
                   cwd=tmp_path)
    assert "trainer.precision=bf16 applies on CUDA only; training in fp32 on cpu." in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    assert read_metrics(run_dir)["status"] == "completed"


def test_mnist_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # no network, whatever the machine has
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    proc = run_cli(["train", *TINY, "dataset=mnist", f"dataset.root={tmp_path / 'nothing'}"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "dataset.root" in proc.stderr and "dataset=npz" in proc.stderr and "train-images-idx3-ubyte" in proc.stderr
    assert not (tmp_path / "nothing").exists()  # the failed download leaves no empty folders behind


def test_eval_command_writes_eval_json(trained):
    run_dir, _ = trained
    proc = run_cli(["eval", str(run_dir), "eval.split=val", "eval.max_points=100", "eval.iw_samples=20"], cwd=run_dir)
    result = json.loads((run_dir / "evals" / "val_best_100points_20iw.json").read_text())
    assert result["points"] == 100 and result["split"] == "val"
    values = result["val"]
    assert values["posterior_kl"] == pytest.approx(values["log_likelihood"] - values["elbo_iw"], abs=1e-4)
    assert re.search(r"log_likelihood +-?\d+\.\d{3} ± \d+\.\d{3}", proc.stdout)  # value ± standard error
    # in the run's own TensorBoard run, at the checkpoint's step
    evaluated = events(run_dir).Scalars("verdict/eval_best/val/log_likelihood")[-1]
    assert evaluated.value == pytest.approx(values["log_likelihood"], abs=1e-4) and evaluated.step == result["step"]


def test_a_run_and_vaebench_eval_report_the_inference_gaps_that_add_up_to_the_posterior_kl(trained):
    """metrics.json's test block and `vaebench eval` carry the amortization and approximation gaps with
    their SEs; on the points they were measured on, the two add up to the posterior KL exactly."""
    run_dir, proc = trained
    test = read_metrics(run_dir)["test"]
    assert test["inference_gap_points"] == 100 and test["inference_gap_steps"] >= 1
    assert test["amortization_gap"] + test["approximation_gap"] == pytest.approx(test["posterior_kl_of_gap_points"], abs=1e-6)
    assert test["amortization_gap"] > -2 * test["amortization_gap_se"]  # q* starts at the encoder's answer
    assert re.search(r"amortization_gap +- +- +-?\d+\.\d{3} ± \d+\.\d{3}", proc.stdout)
    evaluated = run_cli(["eval", str(run_dir), "eval.max_points=40", "eval.iw_samples=20", "eval.gap_points=30"], cwd=run_dir)
    for gap in ("amortization_gap", "approximation_gap"):
        assert re.search(gap + r" +-?\d+\.\d{3} ± \d+\.\d{3}", evaluated.stdout), gap
    values = json.loads((run_dir / "evals" / "test_best_40points_20iw.json").read_text())["test"]
    assert values["inference_gap_points"] == 30


def test_eval_on_train_scores_the_images_the_final_metrics_scored(trained):
    run_dir, _ = trained
    run_cli(["eval", str(run_dir), "eval.split=train", "eval.iw_samples=0"], cwd=run_dir)
    (written,) = (run_dir / "evals").glob("train_best_*points_0iw.json")
    evaluated = json.loads(written.read_text())["train"]
    final = read_metrics(run_dir)["train"]
    for term in ("elbo", "reconstruction", "kl"):
        assert evaluated[term] == pytest.approx(final[term], abs=1e-4), term


def test_two_evaluations_of_a_run_both_survive(trained, tmp_path):
    run_dir, _ = trained
    args = ["eval", str(run_dir), "checkpoint=last", "eval.split=val", "eval.max_points=30", "eval.iw_samples=2"]
    first, second = (run_cli(args, cwd=tmp_path).stdout for _ in range(2))
    kept = sorted(p.name for p in (run_dir / "evals").glob("val_last_30points_2iw*.json"))
    assert kept == ["val_last_30points_2iw-2.json", "val_last_30points_2iw.json"]
    assert kept[1] in first and kept[0] in second  # each says where it went
    for name in kept:
        assert json.loads((run_dir / "evals" / name).read_text())["points"] == 30


def test_eval_help_says_what_it_does_and_where_results_go(tmp_path):
    proc = run_cli(["eval", "--help"], cwd=tmp_path)
    assert "usage: vaebench eval RUN_DIR" in proc.stdout and "evals/" in proc.stdout and "eval.split" in proc.stdout


def test_eval_refuses_an_option_it_does_not_have(trained):
    run_dir, _ = trained
    proc = run_cli(["eval", str(run_dir), "eval.splt=val"], cwd=run_dir, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "eval.splt is not an eval option" in proc.stderr and "eval.split" in proc.stderr


def test_help_lists_the_config_groups_and_what_each_setting_does_without_importing_torch(tmp_path):
    assert "train" in run_cli(["--help"], cwd=tmp_path).stdout
    proc = subprocess.run([sys.executable, "-c", "import sys; from vaebench.cli import main; main(['train', '--help']); "
                           "print('torch imported' if 'torch' in sys.modules else 'no torch')"],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    out = proc.stdout
    assert out.rstrip().endswith("no torch")
    for group in ("dataset:", "model:", "prior:", "objective:", "experiment:"):
        assert f"\n  {group}\n" in out
    assert "   *mnist5k " in out and "    vamp " in out and "*standard " in out  # the defaults marked
    assert re.search(r"\n  beta=1\.0 +the objective's beta", out)
    assert re.search(r"\n  trainer\.batch_size=100 +points per training step", out)
    assert re.search(r"\n  eval\.iw_samples=5000 +importance samples for log p\(x\)", out)
    settings = re.findall(r"\n  ((?:trainer\.|eval\.)?\w+)=\S* {2,}\S", out)  # each with its line on what it does
    assert {"beta", "seed", "resume", "trainer.epochs", "trainer.threads", "eval.gap_points"} <= set(settings)


@pytest.mark.parametrize("bad,said", [
    (["beta=-1"], "beta=-1 is not allowed: beta must be a finite number >= 0."),
    (["-m", "prior=vamp", "prior.K=5,0"], "prior.K=0 is not allowed: prior.K must be an integer >= 1."),
    (["dataset=npz", "dataset.path=no_such.npz"], "dataset.path='no_such.npz' is not allowed"),
    (["objective=iwae", "objective.k=0"], "objective.k=0 is not allowed"),
])
def test_a_bad_value_is_refused_before_torch_is_imported(tmp_path, bad, said):
    """Settings and vaebench's own components are checked on the command line (components against the
    arguments their source declares), in a fraction of a second: torch is never imported."""
    script = ("import sys\nfrom vaebench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as stop:\n"
              "    print('exit', stop.code, 'torch imported' if 'torch' in sys.modules else 'no torch')")
    proc = subprocess.run([sys.executable, "-c", script, "train", *bad], cwd=tmp_path, capture_output=True, text=True)
    assert said in proc.stderr and proc.stdout.strip().endswith("exit 2 no torch"), (proc.stdout, proc.stderr)
    assert not (tmp_path / "outputs").exists()


def test_experiment_configs_compose_with_a_dataset_override(tmp_path):
    out = run_cli(["train", "+experiment=hvae_vampprior_mnist", "dataset=mnist5k", "--cfg", "job"], cwd=tmp_path).stdout
    assert "_target_: vaebench.models.HVAE" in out and "_target_: vaebench.priors.VampPrior" in out
    assert "K: 500" in out and "kl_warmup_epochs: 100" in out
    out = run_cli(["train", "+experiment=vampprior_mnist", "dataset=mnist5k", "prior.K=50", "--cfg", "job"], cwd=tmp_path).stdout
    assert "K: 50\n" in out  # a key override beside an experiment passes the key check
    assert "_target_: vaebench.datasets.mnist5k" in out


def test_the_wheel_ships_the_configs(tmp_path):
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("vaebench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in ("config.yaml", "prior/vamp.yaml", "dataset/mnist5k.yaml", "experiment/vampprior_mnist.yaml"):
        assert f"vaebench/conf/{config}" in names


def test_two_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    from vaebench.run.train import run_dir_of

    taken = tmp_path / "outputs" / "2026-12-06" / "10-01-08"
    taken.mkdir(parents=True)  # the run started first in that second
    mine = run_dir_of(None, str(taken))
    assert mine == f"{taken}-2" and Path(mine).is_dir()
    assert run_dir_of(None, str(taken)) == mine  # Hydra looks it up again: the same folder
    assert run_dir_of(str(tmp_path / "earlier"), str(taken)) == str(tmp_path / "earlier")  # resume= keeps its own
