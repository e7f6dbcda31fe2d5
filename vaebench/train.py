"""The Hydra app behind `vaebench train`: compose the config, build data, model and trainer, train,
and leave a run folder with TensorBoard events, checkpoints and metrics.json."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vaebench import checkpoint
from vaebench.board import Board
from vaebench.data import load_dataset
from vaebench.diagnostics import split_report
from vaebench.errors import UserError
from vaebench.evaluate import as_floats, format_estimate, split_terms
from vaebench.models import build_model
from vaebench.pictures import log_pictures
from vaebench.trainer import Stop, Trainer, surgery_samples
from vaebench.validate import device_for, validate_config, validate_data

log = logging.getLogger(__name__)  # the console and the run folder's train.log (conf/config.yaml)

# Keys a resumed run may change; everything else defines the experiment and comes from its checkpoint.
RESUMABLE_PREFIXES = ("trainer.", "eval.", "resume")
FINAL_METRICS = ("elbo", "reconstruction", "kl", "log_likelihood", "mutual_info", "marginal_kl", "active_units")


def config_dir() -> str:
    """conf/ ships inside the installed package as vaebench/conf; a source checkout has it at the top."""
    try:
        import importlib.resources

        installed = importlib.resources.files("vaebench.conf")
        if installed.joinpath("config.yaml").is_file():
            return str(installed)
    except ModuleNotFoundError:
        pass
    return str(Path(__file__).resolve().parent.parent / "conf")


# A resumed run writes into its own folder again and keeps the .hydra/ config of its first start.
OmegaConf.register_new_resolver("vaebench_run_dir", lambda resume, default: str(resume) if resume else default, replace=True)
OmegaConf.register_new_resolver("vaebench_output_subdir", lambda resume: None if resume else ".hydra", replace=True)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        with _sigterm_as_ctrl_c():
            result = run(cfg, run_dir, list(hydra_cfg.overrides.task), hydra_cfg.job.override_dirname, multirun)
        return sweep_objective(result)
    except KeyboardInterrupt:
        _interrupted_outside_training(cfg, run_dir)
    except UserError as err:
        _record_failure(cfg, run_dir, str(err))
        sweep_goes_on = f"(this run of the sweep failed and is recorded in {run_dir}/metrics.json; the sweep goes on)"
        _tell_failure(f"{err}\n", *([sweep_goes_on] if multirun else []))
        if not multirun:
            sys.exit(2)
        return -math.inf
    except Exception as err:
        _record_failure(cfg, run_dir, f"{type(err).__name__}: {err}")
        raise  # a bug rather than bad input: its traceback is what a report needs; Hydra goes on with a sweep


def _tell_failure(message: str, *hints: str) -> None:
    """Why the run stopped: on stderr for the user and in train.log, so the run folder keeps it too."""
    text = "\n".join([f"\nvaebench: {message}", *hints])
    print(text, file=sys.stderr)
    logging.getLogger("vaebench.record").error(text.strip())


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (what SLURM sends before preemption) stops data loading or the final evaluation as Ctrl-C
    does; inside the training loop the Trainer catches both and writes a checkpoint first."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread (a parallel launcher's worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted_outside_training(cfg: DictConfig, run_dir: Path) -> None:
    """Nothing to save: checkpoints/last.pt, when there is one, already holds the latest state."""
    can_resume = (run_dir / "checkpoints" / "last.pt").is_file()
    message = "Interrupted " + ("after training; the final evaluation did not finish." if can_resume
                                else "before training started; there is nothing to resume.")
    if not cfg.resume or _status(run_dir) == "running":
        _write_json(run_dir / "metrics.json", {"status": "interrupted", "message": message})
    _tell_failure(message, *([f"Resume with:  vaebench train resume={run_dir}"] if can_resume else []))
    sys.exit(130)


def _record_failure(cfg: DictConfig, run_dir: Path, error: str) -> None:
    """metrics.json says the run failed; a resume that fails before it starts training leaves the
    earlier run's record as it was."""
    if cfg.resume and _status(run_dir) != "running":
        return
    _write_json(run_dir / "metrics.json", {"status": "failed", "error": error})


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def sweep_objective(result: dict) -> float:
    """What a Hydra sweeper (Optuna, direction=maximize) maximises: the final validation ELBO. A run
    that did not complete scores -inf, the worst value, so the study goes on; NaN would stop it."""
    if result.get("status") != "completed":
        return -math.inf
    return float(result["val"]["elbo"])


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], label: str, multirun: bool) -> dict:
    state = None
    if cfg.resume:
        state = checkpoint.load(_resume_checkpoint(cfg.resume))
        cfg = _resumed_config(state, cfg, overrides)
    validate_config(cfg)
    if cfg.prior.name == "standard" and cfg.prior.get("K") is not None:
        log.info(f"prior.K={cfg.prior.K} is ignored by prior=standard.")
    _seed_everything(int(cfg.seed))
    device = device_for(cfg)
    data = load_dataset(cfg.dataset, int(cfg.seed))
    validate_data(cfg, data.train, data.val, data.test)
    data = data.to(device)
    model = build_model(cfg, data.data_shape, data.train).to(device)
    if device.type == "cuda" and cfg.model.name == "conv":
        torch.backends.cudnn.benchmark = True
    if cfg.trainer.precision == "bf16" and device.type != "cuda":
        log.info(f"trainer.precision=bf16 applies on CUDA only; training in fp32 on {device.type}.")

    board_dir = run_dir / (state["board_dir"] if state else _board_name(label))
    board = Board(board_dir, purge_step=state["step"] + 1 if state else None)

    def on_evaluation(trainer: Trainer, val_terms: dict) -> None:
        log_pictures(board, model, data.val, trainer.progress.step, data.val_labels, val_terms.get("kl_per_dim"))

    trainer = Trainer(model, data, cfg, run_dir, board, on_evaluation, extra_state={"board_dir": board_dir.name})
    if state:
        trainer.load_state(state)
        log.info(f"Resuming {run_dir} from epoch {trainer.progress.epoch}, step {trainer.progress.step}.")
    else:
        board.hparams(_hparams(cfg), [f"final/{split}/{term}" for split in ("val", "test") for term in FINAL_METRICS])
    log.info(f"Training {cfg.model.name} VAE, prior={cfg.prior.name}, beta={cfg.beta} on {cfg.dataset.name} "
             f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test) on {device}.")
    log.info(f"Run folder: {run_dir}")
    _write_json(run_dir / "metrics.json", {"status": "running", "config": OmegaConf.to_container(cfg, resolve=True)})

    started = time.perf_counter()
    try:
        status = trainer.fit()
    except Stop as stop:
        _write_json(run_dir / "metrics.json", {
            "status": stop.status, "message": stop.message, "epochs": trainer.progress.epoch,
            "step": trainer.progress.step, "config": OmegaConf.to_container(cfg, resolve=True)})
        board.close()
        if stop.status == "interrupted":
            _tell_failure(stop.message, f"Resume with:  vaebench train resume={run_dir}")
            # A sweep stops too: Ctrl-C and SLURM's SIGTERM are meant for the whole process.
            sys.exit(130)
        _tell_failure(stop.message)
        if not multirun:
            sys.exit(3)
        return {"status": stop.status}

    metrics = final_metrics(model, data, cfg, run_dir, device)
    for split in ("train", "val", "test"):
        board.scalars(f"final/{split}", metrics[split], trainer.progress.step)
    board.close()
    result = {
        "status": status,
        **metrics,
        "epochs": trainer.progress.epoch,
        "best_epoch": trainer.progress.best_epoch,
        "step": trainer.progress.step,
        "wall_time_s": trainer.progress.wall_time_s,
        "train_time_s": time.perf_counter() - started,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    _write_json(run_dir / "metrics.json", result)
    _log_summary(result, run_dir, board_dir, multirun)
    return result


def final_metrics(model, data, cfg, run_dir: Path, device) -> dict:
    """Every term on every split from the best checkpoint (best validation ELBO); the surgery terms
    on val and test, and the importance-weighted log p(x) on test."""
    best = run_dir / "checkpoints" / "best.pt"
    if best.exists():
        model.load_state_dict(checkpoint.load(best, device)["model"])
    # The train split gets the ELBO terms only: its surgery would pair every one of its points.
    metrics = {"train": as_floats(split_terms(model, data.train, cfg.eval.batch_size, binarize=data.dynamic_binarize))}
    draws = surgery_samples(cfg)
    metrics["val"] = split_report(model, data.val, cfg.eval.batch_size, iw_samples=0, surgery_samples=draws)
    metrics["test"] = split_report(model, data.test, cfg.eval.batch_size, cfg.eval.iw_samples, surgery_samples=draws)
    return metrics


def _resume_checkpoint(resume) -> Path:
    last = Path(str(resume)) / "checkpoints" / "last.pt"
    if not last.is_file():
        raise UserError(
            f"resume={resume}: there is no checkpoint {last}. resume= takes the folder of an earlier run, "
            "the one that holds checkpoints/last.pt (e.g. resume=outputs/2026-11-25/10-00-00)."
        )
    return last


def _resumed_config(state: dict, cfg: DictConfig, overrides: list[str]) -> DictConfig:
    saved = OmegaConf.create(state["config"])
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if not key.startswith(RESUMABLE_PREFIXES):
            raise UserError(
                f"{override!r} cannot change a resumed run: only trainer.* and eval.* settings may differ "
                f"from the original run. Start a new run to change {key}."
            )
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    old_batch, in_epoch = state["config"]["trainer"]["batch_size"], state["progress"]["batch_in_epoch"]
    if in_epoch and saved.trainer.batch_size != old_batch:
        # The epoch's remaining batches are counted in the old size: a new one would skip or repeat points.
        raise UserError(
            f"trainer.batch_size={saved.trainer.batch_size} cannot resume this run: it stopped in the middle of "
            f"an epoch ({in_epoch} batches of {old_batch} taken). Resume with trainer.batch_size={old_batch}, "
            "or without trainer.batch_size, which keeps the run's own."
        )
    return saved


def _board_name(label: str) -> str:
    """The TensorBoard run's name tells its overrides, e.g. `beta=4,prior=vamp`."""
    name = label.replace(os.sep, "_")[:200]
    return name or "tensorboard"


def _hparams(cfg: DictConfig) -> dict:
    return {
        # K=0 where the prior has no components, even when a sweep grid sets prior.K for every prior.
        "prior": cfg.prior.name, "K": (cfg.prior.get("K") or 0) if cfg.prior.name != "standard" else 0,
        "beta": float(cfg.beta),
        "latent_dim": cfg.model.latent_dim, "model": cfg.model.name, "dataset": cfg.dataset.name,
        "seed": cfg.seed, "lr": float(cfg.trainer.lr),
    }


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


SUMMARY_TERMS = ("elbo", "reconstruction", "kl", "kl_z1", "kl_z2", "log_joint", "entropy", "log_likelihood",
                 "elbo_iw", "posterior_kl", "mutual_info", "marginal_kl", "total_correlation", "dimwise_kl",
                 "active_units")


def _log_summary(result: dict, run_dir: Path, board_dir: Path, multirun: bool) -> None:
    splits = ("train", "val", "test")
    terms = [t for t in SUMMARY_TERMS if any(t in result[split] for split in splits)]
    lines = [f"\nFinal terms (nats per point, ± standard error; best checkpoint, epoch {result['best_epoch']}):",
             f"  {'term':<18}" + "".join(f"{split:>20}" for split in splits)]
    lines += [f"  {t:<18}" + "".join(format_estimate(result[split], t) for split in splits) for t in terms]
    lines += [f"\nOutputs:      {run_dir}  (metrics.json, checkpoints/best.pt, checkpoints/last.pt, train.log)",
              f"TensorBoard:  tensorboard --logdir {run_dir if not multirun else run_dir.parent}"]
    log.info("\n".join(lines))
