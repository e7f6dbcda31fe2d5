"""A run saved before the VampPrior's pseudo-inputs became clamped pixel values holds them as logits
behind a sigmoid (`prior.raw_inputs`): it evaluates to the numbers it recorded, and it resumes,
the pseudo-inputs' Adam starting afresh (its moments are in logit units). data/run_with_logit_pseudo_inputs
is such a run, saved by the vaebench of commit c5724dc, at one thread on a 2-core AMD EPYC (Zen 5, AVX-512):
`vaebench train prior=vamp prior.K=3 model.hidden_dim=8 model.latent_dim=4 trainer.epochs=2 trainer.lr=1e-2
eval.iw_samples=8 eval.gap_points=10 trainer.device=cpu dataset.val_size=100 dataset.test_size=100`
(its checkpoints and metrics.json kept)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import read_metrics, run_cli
from vaebench.config.components import build_model
from vaebench.datasets import mnist5k
from vaebench.run import checkpoint
from vaebench.run.saved_run import read_checkpoint

SAVED_AS_LOGITS = Path(__file__).parent / "data" / "run_with_logit_pseudo_inputs"
STEPS_PER_EPOCH = 48  # 4,800 training points in batches of 100


@pytest.fixture
def run_dir(tmp_path) -> Path:
    shutil.copytree(SAVED_AS_LOGITS, tmp_path / "run")
    return tmp_path / "run"


def test_its_pseudo_inputs_load_as_the_very_pixels_its_sigmoid_gave():
    _, state, cfg = read_checkpoint(SAVED_AS_LOGITS, "best")
    logits = state["model"]["prior.raw_inputs"]
    assert "prior.unclamped_inputs" not in state["model"]  # the run is what it claims to be
    assert "gated" not in cfg.model  # saved before the option: it rebuilds the ReLU model it trained
    data = mnist5k(seed=0, val_size=100, test_size=100)
    model = build_model(cfg, data.data_shape, data.scored("train"), dict(cfg.choices))
    model.load_state_dict(state["model"])
    assert torch.equal(model.prior.pseudo_inputs, torch.sigmoid(logits))  # bit for bit


def test_it_evaluates_to_exactly_the_numbers_it_recorded(run_dir):
    run_cli(["eval", str(run_dir)], cwd=run_dir.parent)  # its own split, points, samples and gap points
    (written,) = (run_dir / "evals").glob("test_best_100points_8iw.json")
    evaluated, recorded = json.loads(written.read_text())["test"], read_metrics(run_dir)["test"]
    assert set(evaluated) == set(recorded)
    # To float32 rounding, not every bit: since issue 41 the mixtures' log-densities of an evaluation
    # are reduced in tiles, in base 2 (another CPU's kernels round otherwise too). A wrong conversion
    # moves the pseudo-inputs, and with them every term, by far more.
    assert evaluated == pytest.approx(recorded, rel=1e-5, abs=1e-5)


def test_it_resumes_with_its_pseudo_inputs_adam_started_afresh(run_dir):
    resumed = run_cli(["train", f"resume={run_dir}", "trainer.epochs=3"], cwd=run_dir.parent)
    assert ("prior.unclamped_inputs: an earlier vaebench saved it in another form, converted as the model loaded; "
            "its Adam moments are in the old form's units and cannot carry over") in resumed.stdout
    assert "Adam starts afresh" in (run_dir / "train.log").read_text()
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    names = list(last["model"])  # the parameters in the optimiser's order: the model has no buffers
    steps = {names[i]: int(s["step"]) for i, s in last["optimizer"]["state"].items()}
    assert steps["prior.unclamped_inputs"] == STEPS_PER_EPOCH  # since the resume only
    assert {step for name, step in steps.items() if name != "prior.unclamped_inputs"} == {3 * STEPS_PER_EPOCH}
    assert "prior.raw_inputs" not in last["model"]  # saved again in today's form
