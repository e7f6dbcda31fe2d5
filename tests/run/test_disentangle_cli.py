"""`vaebench train dataset=sprites model=conv64` and `vaebench eval` end to end: the disentanglement
metrics in the console's final table, metrics.json, the eval file and TensorBoard."""

import json
import subprocess
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import board_dir, read_metrics, run_cli, run_dirs
from vaebench.metrics.disentanglement import METRIC_NAMES

SMALL_SPRITES = ["dataset=sprites", "dataset.size=32", "dataset.scales=2", "dataset.orientations=3",
                 "dataset.positions=6"]  # 648 images
TINY_CONV = ["model=conv64", "model.hidden_dim=16", "model.channels=4", "model.latent_dim=4", "trainer.epochs=1",
             "eval.iw_samples=4", "eval.surgery_samples=2", "trainer.device=cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("sprites")
    proc = run_cli(["train", *SMALL_SPRITES, f"dataset.root={root / 'cache'}", *TINY_CONV, "beta=4"], cwd=root)
    (run_dir,) = run_dirs(root)
    return run_dir, proc


def test_training_on_sprites_reports_every_disentanglement_metric(trained):
    run_dir, proc = trained
    record = read_metrics(run_dir)
    assert record["status"] == "completed"
    scores = record["disentanglement"]
    for name in METRIC_NAMES:
        assert 0.0 <= scores[name] <= 1.0, name
        assert f"  {name} " in proc.stdout  # the console's table
    assert scores["points"] == 648  # every split's points
    factors = record["latent_factors"]
    assert factors["factors"] == ["shape", "scale", "orientation", "x", "y"]
    assert len(factors["factor_of_dim"]) == 4 and set(factors["factor_of_dim"]) <= set(factors["factors"])
    assert "Disentanglement (posterior means of 648 points" in (run_dir / "train.log").read_text()
    # the cache lies where dataset.root says, nothing of it in the run folder
    assert list((run_dir.parents[2] / "cache").glob("sprites_32px_*.npz"))
    assert [path.name for path in run_dir.rglob("*.npz")] == ["test_points.npz"]
    board = EventAccumulator(str(board_dir(run_dir)))  # the run's own TensorBoard run, beside its curves
    board.Reload()
    assert {f"verdict/final/disentanglement/{name}" for name in METRIC_NAMES} <= set(board.Tags()["scalars"])


def test_vaebench_eval_writes_the_same_metrics(trained):
    run_dir, _ = trained
    proc = run_cli(["eval", str(run_dir), "eval.iw_samples=2", "eval.max_points=20"], cwd=run_dir)
    (written,) = (run_dir / "evals").glob("*.json")
    result = json.loads(written.read_text())
    trained_scores = read_metrics(run_dir)["disentanglement"]
    # the same checkpoint, the same points and the same seeds: the same numbers
    assert result["disentanglement"] == pytest.approx(trained_scores)
    assert "dci_disentanglement" in proc.stdout
    board = EventAccumulator(str(board_dir(run_dir)))
    board.Reload()
    assert board.Scalars("verdict/eval_best/disentanglement/mig")[-1].value == pytest.approx(
        result["disentanglement"]["mig"], abs=1e-5)


def test_a_missing_dsprites_file_is_refused_in_one_paragraph(tmp_path):
    proc = run_cli(["train", "dataset=dsprites", "dataset.path=missing.npz", *TINY_CONV], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "dataset.path='missing.npz' is not a file" in proc.stderr and "dataset=sprites" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_the_64x64_model_refuses_mnist_images(tmp_path):
    proc = run_cli(["train", "dataset=mnist5k", *TINY_CONV], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "model=conv64 needs square images of 64x64 or 32x32" in proc.stderr and "(1, 28, 28)" in proc.stderr
