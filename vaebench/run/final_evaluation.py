"""The final evaluation of a run's best checkpoint, kept as it goes in checkpoints/final_evaluation.pt.

On a large split it takes hours on a CPU (the aggregate-posterior prior of full MNIST: half an hour of
surgery, then over an hour of log p(x)), so a run stopped in it (Ctrl-C, a cluster's SIGTERM) must not
start it again: each split's terms are kept when done, the test log p(x) every SAVE_EVERY_S seconds
and at the stop, and a resumed run goes on from there to the numbers it would have reached without
stopping. The file goes once metrics.json holds the result.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from vaebench.metrics.diagnostics import split_report
from vaebench.metrics.evaluation import PER_POINT
from vaebench.metrics.inference_gaps import inference_gaps
from vaebench.metrics.likelihood import log_likelihood_report
from vaebench.run import checkpoint
from vaebench.run.per_point import save_points
from vaebench.views.console import EvaluationProgress, StagedProgress

log = logging.getLogger("vaebench")

RECORD_NAME = "final_evaluation.pt"
SAVE_EVERY_S = 60.0
# Parts that take longer than this are announced as they finish.
ANNOUNCE_AFTER_S = 10.0


def final_metrics(model, data, cfg: DictConfig, run_dir: Path, device) -> dict:
    """Every term and the surgery on every split from the best checkpoint (best validation ELBO), and the
    importance-weighted log p(x) on test. The training split's surgery shows what a prior fitted to
    the data hides there (the aggregate posterior's marginal KL is 0 on its own points only)."""
    best = run_dir / "checkpoints" / "best.pt"
    state = checkpoint.load(best, device) if best.exists() else None
    if state is not None:
        model.load_state_dict(state["model"])
    record = EvaluationRecord(run_dir / "checkpoints" / RECORD_NAME, {
        "checkpoint_step": state["step"] if state is not None else None,
        "batch_size": int(cfg.eval.batch_size), "surgery_samples": int(cfg.eval.surgery_samples),
        "iw_samples": int(cfg.eval.iw_samples), "surgery_points": cfg.eval.get("surgery_points")})
    record.announce(len(data.test))
    metrics = {}
    for number, split in enumerate(("train", "val", "test"), start=1):
        with StagedProgress(f"{split} ({number}/3) ") as progress:
            metrics[split] = dict(record.part(split, lambda: split_report(
                model, data.scored(split), cfg.eval.batch_size, iw_samples=0, surgery_samples=cfg.eval.surgery_samples,
                surgery_points=cfg.eval.get("surgery_points"), progress=progress, keep_points=split == "test")))
    per_point = metrics["test"].pop(PER_POINT, {})
    if cfg.eval.iw_samples > 0:
        likelihood = _test_log_likelihood(model, data.test, cfg, record)
        per_point.update(likelihood.pop(PER_POINT))
        metrics["test"] = {**metrics["test"], **likelihood}
        if cfg.eval.get("gap_points"):
            # the part's name says which q* it holds: a record kept by the Adam-fitted q* of before is not reused
            metrics["test"].update(record.part("test_inference_gaps_by_lbfgs", lambda: inference_gaps_of_points(
                model, data.test, per_point, int(cfg.eval.gap_points), cfg.eval.batch_size, "test"),
                what="the test inference gaps"))
    if per_point:
        save_points(run_dir, data.scored("test"), per_point)
    return metrics


def discard_record(run_dir: Path) -> None:
    """Once metrics.json holds the final evaluation, its partial record is spent."""
    (run_dir / "checkpoints" / RECORD_NAME).unlink(missing_ok=True)


def _test_log_likelihood(model, x: torch.Tensor, cfg: DictConfig, record: "EvaluationRecord") -> dict[str, float]:
    done = record.parts.get("test_log_likelihood_so_far")
    what = f"test log p(x), {cfg.eval.iw_samples} samples per point"
    with EvaluationProgress(len(x), what, done=len(done["log_px"]) if done else 0) as progress:
        try:
            return log_likelihood_report(model, x, cfg.eval.batch_size, cfg.eval.iw_samples, on_points=progress.update,
                                         done=done, on_block=record.keep_partial, keep_points=True)
        except BaseException:  # Ctrl-C, SIGTERM: keep the points finished since the last save
            record.save()
            raise


def inference_gaps_of_points(model, x: torch.Tensor, per_point: dict, points: int, batch_size: int,
                             split: str) -> dict[str, float]:
    """The amortization and approximation gaps of the first `points` points of the split `x`, from their
    log p(x) and ELBO of the log-likelihood's importance samples; {} for a model whose `latents` takes
    no `adjust` (a user's own, written before the gaps)."""
    points = min(points, len(x))
    with StagedProgress(f"{split} ") as progress:
        try:
            gaps = inference_gaps(model, x[:points], per_point["log_likelihood"][:points], per_point["elbo_iw"][:points],
                                  batch_size, progress)
        except TypeError as err:
            if "adjust" not in str(err):
                raise
            log.info(f"No inference gaps: this model's latents() takes no `adjust` ({err}).")
            return {}
    if gaps["approximation_gap"] < -2 * gaps["approximation_gap_se"]:
        log.warning(f"The approximation gap is below zero ({gaps['approximation_gap']:.3f} ± "
                    f"{gaps['approximation_gap_se']:.3f} nats): an ELBO above log p(x) means the test log p(x) "
                    "is underestimated; more importance samples (eval.iw_samples) would raise it.")
    return gaps


class EvaluationRecord:
    """The finished parts of one final evaluation, identified by `key` (the checkpoint it scores and the
    settings that change its numbers): a record made under another key is not reused."""

    def __init__(self, path: Path, key: dict):
        self.path, self.key = path, key
        self.parts: dict = {}
        self.saved_at = time.monotonic()
        if path.is_file():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # a record is a convenience: without it the evaluation starts over
                log.info(f"Starting the final evaluation over: {path} is unreadable ({type(err).__name__}).")
                return
            if saved.get("key") == key:
                self.parts = saved["parts"]
            else:
                log.info(f"Starting the final evaluation over: {path} was made for another checkpoint or other "
                         f"eval settings ({saved.get('key')}; now {key}).")

    def announce(self, test_points: int) -> None:
        if not self.parts:
            return
        splits = [split for split in ("train", "val", "test") if split in self.parts]
        so_far = self.parts.get("test_log_likelihood_so_far")
        going_on = f"; test log p(x) goes on from {len(so_far['log_px']):,} of {test_points:,} points" if so_far else ""
        log.info(f"Resuming the final evaluation from {self.path.name}: every term and the surgery of "
                 f"{', '.join(splits)} are done{going_on}.")

    def part(self, name: str, compute, what: str | None = None) -> dict[str, float]:
        """The part `name`, from the record or computed now and kept; `what` names it in the log (a
        split's part: every term and its surgery)."""
        if name not in self.parts:
            started = time.perf_counter()
            self.parts[name] = compute()
            self.save()
            seconds = time.perf_counter() - started
            if seconds >= ANNOUNCE_AFTER_S:
                log.info(f"Final evaluation: {what or f'every term and the surgery of {name}'} done in {seconds:.0f} s.")
        return self.parts[name]

    def keep_partial(self, partial: dict) -> None:
        """The test log p(x) so far: saved every SAVE_EVERY_S seconds, and by `save` when the run stops."""
        self.parts["test_log_likelihood_so_far"] = {
            name: value.cpu() if isinstance(value, torch.Tensor) else {k: v.cpu() for k, v in value.items()}
            for name, value in partial.items()}
        if time.monotonic() - self.saved_at >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        checkpoint.save_atomic({"key": self.key, "parts": self.parts}, self.path)
        self.saved_at = time.monotonic()
