"""Sweeps end to end: numbered run folders, TensorBoard names, HParams and pictures, the joblib and SLURM
launchers, `vaebench report`, and the choice of GPU for parallel jobs."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import TINY, board_dir, read_metrics, run_cli, run_cli_on_a_terminal
from vaebench.run.train import sweep_objective
from vaebench.run.device import gpu_for_job

# One epoch of 8 batches per run: a sweep of four runs costs seconds.
FAST = [o for o in TINY if not o.startswith("trainer.epochs=")] + [
    "trainer.epochs=1", "trainer.batch_size=500", "prior.K=5"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The key settings, then every other one the command line set: FAST's sizes, epochs, device and evaluation.
HPARAMS = {"prior", "K", "beta", "objective", "hidden_dim", "latent_dim", "batch_size", "epochs", "device",
           "eval.iw_samples"}


def sweep_dir(root: Path) -> Path:
    (found,) = (root / "outputs" / "multirun").glob("*/*")
    return found


def board(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(board_dir(run_dir)), size_guidance={"images": 1})
    accumulator.Reload()
    return accumulator


def session_hparams(accumulator: EventAccumulator) -> dict:
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in values.items()}


def shown_hparams(accumulator: EventAccumulator) -> list[str]:
    """The hyperparameters TensorBoard's HParams table shows (ticks) by default: its first five, those
    marked as differing between runs first, then by name."""
    content = accumulator.PluginTagToContent("hparams")["_hparams_/experiment"]
    infos = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos
    return [info.name for info in sorted(infos, key=lambda info: (not info.differs, info.name))][:5]


def experiment_metrics(accumulator: EventAccumulator) -> list[str]:
    """The HParams metrics, as `sub-run/tag` relative to the run, `tag` for the run itself."""
    content = accumulator.PluginTagToContent("hparams")["_hparams_/experiment"]
    infos = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.metric_infos
    return ["/".join(filter(None, (m.name.group, m.name.tag))) for m in infos]


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, str]:
    """A 2x2 sweep over beta and the prior, prior.K set for both priors; its folder and its output."""
    root = tmp_path_factory.mktemp("grid")
    proc = run_cli(["train", "-m", "beta=1,4", "prior=standard,vamp", *FAST], root)
    return sweep_dir(root), proc.stdout


@pytest.fixture(scope="module")
def parallel_on_a_terminal(tmp_path_factory) -> tuple[Path, str]:
    """Two runs side by side through joblib, with a 2-D latent space: the VAE and the two-level VAE,
    started from a terminal; the sweep's folder and what the terminal showed."""
    root = tmp_path_factory.mktemp("joblib")
    overrides = [o for o in FAST if not o.startswith("model.latent_dim=")]
    returncode, console = run_cli_on_a_terminal(["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                                 "model=mlp,hvae", "model.latent_dim=2", *overrides], root)
    assert returncode == 0, console[-3000:]
    return sweep_dir(root), console


@pytest.fixture(scope="module")
def parallel(parallel_on_a_terminal) -> Path:
    return parallel_on_a_terminal[0]


def test_a_parallel_sweeps_terminal_shows_whole_lines_each_named_by_its_run(parallel_on_a_terminal):
    """Two processes share the terminal: no bar redrawn in place (each would overwrite the other's and
    leave half-drawn lines), every line of a run starts with its [#N], none is split or cut."""
    _, console = parallel_on_a_terminal
    assert "\r" not in console.replace("\r\n", "\n")  # nothing redrawn in place
    lines = [line for line in console.replace("\r\n", "\n").split("\n") if line.strip()]
    runs = [line for line in lines if re.match(r"\[#\d\] ", line)]
    assert {line[:4] for line in runs} == {"[#0]", "[#1]"}
    assert any(re.match(r"\[#0\] epoch +1/", line) for line in runs) and any(re.match(r"\[#1\] epoch +1/", line) for line in runs)
    assert not [line for line in lines if "[#" in line[1:] and not re.match(r"\[#\d\] ", line) and "HYDRA" not in line]
    assert not [line for line in lines if re.search(r"\bpoi/s|\bit/s", line)]


def test_grid_sweep_runs_in_numbered_folders_with_named_boards_and_hparams(grid):
    folder, stdout = grid
    runs = sorted(p for p in folder.iterdir() if p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    names = set()
    for run in runs:
        metrics = read_metrics(run)
        assert metrics["status"] == "completed"
        events = board_dir(run) / "events"
        names.add(events.parent.name)
        config = metrics["config"]
        assert f"prior={config['choices']['prior']}" in events.parent.name
        accumulator = board(run)
        hparams = session_hparams(accumulator)
        assert set(hparams) == HPARAMS
        assert shown_hparams(accumulator)[:2] == ["beta", "prior"]  # the sweep's axes, though not first by name
        assert hparams["prior"] == config["choices"]["prior"] and hparams["beta"] == config["beta"]
        assert hparams["K"] == ("-" if config["choices"]["prior"] == "standard" else "5")
        assert experiment_metrics(accumulator)[:2] == ["verdict/final/test/log_likelihood", "verdict/final/val/elbo"]
        assert not [tag for tag in accumulator.Tags()["scalars"] if not tag.startswith(("train/", "val/", "verdict/"))]
        assert "val/mutual_info_max" not in accumulator.Tags()["scalars"]  # log N is no curve
        # the final values in the run's own folder, so in its own colour: one TensorBoard run per run
        assert {p.parent for p in run.rglob("events.out.tfevents.*")} == {events.parent}
        final = accumulator.Scalars("verdict/final/val/elbo")
        assert [p.value for p in final] == [pytest.approx(metrics["val"]["elbo"], abs=1e-4)]
        assert accumulator.Scalars("verdict/final/test/log_likelihood")[0].value == pytest.approx(
            metrics["test"]["log_likelihood"], abs=1e-4)
        assert "| log_likelihood |" in accumulator.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()
        if config["choices"]["prior"] == "standard":  # the grid's prior.K is not the standard prior's
            assert "prior.K" not in events.parent.name
    assert len(names) == 4
    assert "prior.K=5 is ignored by the standard prior" in stdout
    assert f"vaebench report {folder.resolve()}" in stdout  # the callback at the end of the sweep


def test_each_console_line_of_a_sweep_says_its_run(grid):
    _, stdout = grid
    epoch_lines = [line for line in stdout.splitlines() if "epoch " in line and "val elbo" in line]
    assert sorted(line.split()[0] for line in epoch_lines) == ["[#0]", "[#1]", "[#2]", "[#3]"]
    table_rows = [line for line in stdout.splitlines() if "reconstruction " in line]
    assert len(table_rows) == 4 and all(line.startswith("[#") for line in table_rows)


def test_a_sweeps_verdict_shows_every_run_in_one_figure_per_headline_metric(grid):
    """TensorBoard's scalar charts scale outliers away; the sweep's own `verdict` run holds a figure per
    headline metric with every run on it, each named by its configuration."""
    from vaebench.report.verdict_board import verdict_rows

    folder, stdout = grid
    accumulator = EventAccumulator(str(folder / "verdict"), size_guidance={"images": 0})
    accumulator.Reload()
    images = set(accumulator.Tags()["images"])
    assert {"verdict/test/log_likelihood", "verdict/val/elbo", "verdict/val/kl"} <= images
    assert "IMAGES tab, verdict/" in stdout
    labels, metrics = verdict_rows(folder)
    assert len(labels) == 4 and labels[0].startswith("0: ") and any("VampPrior" in label for label in labels)
    assert all(len(values) == 4 and all(math.isfinite(v) for v, _ in values) for values in metrics.values())
    expected = [read_metrics(folder / str(n))["test"]["log_likelihood"] for n in range(4)]
    assert [v for v, _ in metrics["test/log_likelihood"]] == expected


def test_grid_sweep_logs_every_picture_that_applies(grid):
    folder, _ = grid
    for run in sorted(p for p in folder.iterdir() if p.name.isdigit()):
        images = set(board(run).Tags()["images"])
        expected = {"visuals/reconstructions", "visuals/prior_samples", "visuals/traversals"}
        if read_metrics(run)["config"]["choices"]["prior"] == "vamp":
            expected.add("visuals/pseudo_inputs")
        assert expected <= images
        assert "visuals/latent_scatter" not in images  # 4 latent dimensions: no plane to draw


def test_report_writes_a_sorted_table_and_png_plots(grid):
    folder, _ = grid
    proc = run_cli(["report", str(folder)], folder)
    with (folder / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    elbos = [float(r["val_elbo"]) for r in rows]
    assert elbos == sorted(elbos, reverse=True)
    assert {r["K"] for r in rows if r["prior"] == "standard"} == {""}
    # the console shows what varies (prior, beta), the rest once above the table
    shared = next(line for line in proc.stdout.splitlines() if line.startswith("shared by all 4 runs: "))
    for setting in ("objective=elbo", "dataset=mnist5k", "model=mlp", "K=5 (vamp) latent_dim=4"):
        assert setting in shared
    assert re.search(r"^run +configuration +(seed +)?ELBO", proc.stdout, re.M)  # one name per configuration
    assert re.search(r"^\d +VampPrior K=5, beta=4 ", proc.stdout, re.M) and re.search(r"^\d +standard, beta=1 ", proc.stdout, re.M)
    assert (folder / "report.md").read_text().split("## Paired")[0].count("\n| ") == 5
    plots = sorted(folder.glob("*.png"))
    assert [p.name for p in plots] == ["inference_gaps.png", "marginal_kl_vs_beta.png", "mutual_info_vs_beta.png", "paired_differences.png",
                                       "rate_distortion.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_SIGNATURE and plot.stat().st_size > 1000


def test_report_skips_unfinished_runs(grid, tmp_path):
    folder, _ = grid
    for metrics in folder.rglob("metrics.json"):
        copy = tmp_path / metrics.relative_to(folder)
        copy.parent.mkdir(parents=True)
        copy.write_text(metrics.read_text())
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "metrics.json").write_text(json.dumps({"status": "running", "config": {}}))
    proc = run_cli(["report", str(tmp_path)], tmp_path)
    assert "skipped 1 unfinished run" in proc.stdout
    assert len((tmp_path / "report.csv").read_text().strip().splitlines()) == 1 + 4


def test_report_on_an_empty_folder_fails_with_a_message(tmp_path):
    proc = run_cli(["report", str(tmp_path)], tmp_path, check=False)
    assert proc.returncode != 0
    assert "no finished runs" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_joblib_runs_a_two_run_sweep(parallel):
    runs = sorted(p for p in parallel.iterdir() if p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1"]
    assert [read_metrics(run)["status"] for run in runs] == ["completed", "completed"]


def test_each_joblib_job_trains_with_its_share_of_the_cpus(parallel):
    """Each job reads back the thread count torch uses in it: the CPUs it may use over the 2 jobs at once."""
    from vaebench.run.threads import usable_cpus

    for run in sorted(p for p in parallel.iterdir() if p.name.isdigit()):
        metrics = read_metrics(run)
        assert metrics["threads"] == max(1, usable_cpus()[0] // 2)
        assert "shared by the 2 jobs the joblib launcher runs at once" in metrics["threads_why"]
        assert f"Threads: {metrics['threads']} (" in (run / "train.log").read_text()


def test_a_two_dimensional_latent_space_is_scattered(parallel):
    for run in sorted(p for p in parallel.iterdir() if p.name.isdigit()):
        images = set(board(run).Tags()["images"])
        assert {"visuals/latent_scatter", "visuals/traversals"} <= images  # the HVAE traverses z2


def test_slurm_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from vaebench.run.train import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.partition and cfg.hydra.launcher.gpus_per_node == 1


def test_parallel_jobs_take_the_gpus_in_turn():
    assert [gpu_for_job(n, 3) for n in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert gpu_for_job(5, 1) == 0


def test_the_sweep_objective_is_the_validation_elbo():
    assert sweep_objective({"status": "completed", "val": {"elbo": -90.5}}) == -90.5
    assert sweep_objective({"status": "diverged"}) == -math.inf


def test_report_compares_each_configuration_with_the_first_by_paired_differences(grid):
    """Every run of the grid scored the same test points (one seed): three configurations against the
    sweep's first, each term as a paired difference with its SE, in the console and report.md."""
    folder, _ = grid
    proc = run_cli(["report", str(folder)], folder)
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Test-point differences from standard, beta=1"))
    compared = [line for line in lines[start + 2:start + 5]]
    assert len(compared) == 3 and all("paired, 500 points" in line for line in compared)
    assert all(re.search(r"[+-]\d+\.\d\d ± \d+\.\d\d", line) for line in compared)
    markdown = (folder / "report.md").read_text()
    assert "## Paired differences from standard, beta=1" in markdown
    from tests.test_readme import gfm_cells, tables

    for start, rows in tables(markdown):  # every table of report.md renders with its columns on GitHub
        assert all(len(gfm_cells(row)) == len(gfm_cells(rows[0])) for row in rows), f"report.md:{start}"
    assert markdown.count("paired, 500 points |") == 3 * 4  # log p(x), ELBO, reconstruction, KL
