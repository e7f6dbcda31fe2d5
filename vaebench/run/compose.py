"""One run from its config: build the data, the model with its prior, the objective and the trainer;
train; evaluate the best checkpoint; record everything in the run folder. The composition root: below
it, each part receives the values it uses, not the config."""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from vaebench.config.components import build_dataset, build_model, build_objective, entry_of, prior_notes
from vaebench.config.saved import resume_checkpoint, saved_config
from vaebench.config.validate import validate_config, validate_data
from vaebench.errors import UserError
from vaebench.metrics import disentanglement
from vaebench.metrics.collapse import CollapseWatch, dimensions_in_use
from vaebench.run import checkpoint
from vaebench.run.device import device_for
from vaebench.run.final_evaluation import discard_record, final_metrics
from vaebench.run.training_state import stop_reason
from vaebench.run.naming import DISENTANGLEMENT_HPARAMS, HPARAMS_METRICS, board_name, hparams
from vaebench.run.record import tell_failure, write_json
from vaebench.run.requeue import this_job
from vaebench.run.threads import share_for
from vaebench.run.trainer import Stop, Trainer, settle_threads
from vaebench.run.training_state import restore_training_state
from vaebench.views.board import Board
from vaebench.views.pictures import log_pictures
from vaebench.views.summary import disentanglement_lines, final_table_lines, final_table_markdown

log = logging.getLogger(__name__)  # the console and the run folder's train.log (conf/config.yaml)

# What a resume may change: how long the run trains, how it is evaluated, and its threads (said, with what
# that costs: `threads.CpuShare.settle`). Everything else defines the run and comes from its checkpoint.
RESUMABLE = ("trainer.epochs", "trainer.patience", "trainer.log_every", "trainer.threads", "eval.*")


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], multirun: bool, axes: set[str] = frozenset(),
        jobs: int = 1, restarted: bool = False) -> dict:
    """`jobs`: how many runs of the sweep the launcher runs side by side on this machine; `restarted`: a
    job scheduler started this run again (`cfg.resume` is its own folder), counted in metrics.json."""
    state = None
    if cfg.resume:
        state = checkpoint.load(resume_checkpoint(cfg.resume))
        cfg = _resumed_config(state, cfg, overrides)
    restarts = int(state.get("restarts", 0)) + int(restarted) if state else 0
    choices = dict(cfg.get("choices") or {})
    validate_config(cfg, choices)
    _seed_everything(int(cfg.seed))
    device = device_for(cfg)
    cpu_share = share_for(cfg.trainer.get("threads"), jobs, device)
    data = build_dataset(cfg.dataset, int(cfg.seed), entry_of("dataset", choices)).to(device)
    model = build_model(cfg, data.data_shape, data.scored("train"), choices).to(device)
    validate_data(model, data, choices)
    log.info(cpu_share.start(saved=state.get("threads") if state else None))
    with torch.no_grad():
        for note in prior_notes(model.prior(), entry_of("prior", choices, type(model.prior).__name__)):
            log.info(note)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the convolutional models' fastest kernels for their fixed shapes
    if cfg.trainer.precision == "bf16" and device.type != "cuda":
        log.info(f"trainer.precision=bf16 applies on CUDA only; training in fp32 on {device.type}.")

    steps_per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    objective = build_objective(cfg.objective, model, len(data.train), steps_per_epoch, cfg.beta, choices)
    for note in _objective_notes(objective, cfg, choices):
        log.info(note)

    board_dir = run_dir / (state["board_dir"] if state else board_name(cfg, overrides))
    board = Board(board_dir, purge_step=state["step"] + 1 if state else None)
    collapse = CollapseWatch(model.latent_dim, state.get("collapse_watch") if state else None, settings={
        "objective": choices.get("objective", "elbo"), "beta": cfg.beta, "beta_weighs": getattr(objective, "beta_weighs", "the KL"),
        "kl_warmup_epochs": cfg.trainer.kl_warmup_epochs,
        "schedule_epochs": math.ceil(getattr(objective, "schedule_steps", 0) / steps_per_epoch)})

    def on_evaluation(trainer: Trainer, val_terms: dict) -> None:
        log_pictures(board, model, data.val, trainer.progress.step, data.val_labels, val_terms.get("kl_per_dim"))
        collapse.observe(trainer.progress.epoch, val_terms)
        if "kl_per_dim" in val_terms:  # what the collapse rule counts beside the active units
            board.scalars("val", {"informative_dims": dimensions_in_use(val_terms)["informative_dims"]}, trainer.progress.step)

    trainer = Trainer(model, data, cfg, run_dir, board, on_evaluation, objective=objective, cpu_share=cpu_share,
                      extra_state={"board_dir": board_dir.name, "collapse_watch": collapse.record, "restarts": restarts,
                                   "job": this_job()})
    if state:
        restore_training_state(trainer, state)
        how = f"Restarted by the job scheduler (restart {restarts}): resuming" if restarted else "Resuming"
        log.info(f"{how} {run_dir} from epoch {trainer.progress.epoch}, step {trainer.progress.step}.")
    else:
        params, varied = hparams(cfg, choices, model, overrides, axes)
        board.hparams(params, {**HPARAMS_METRICS, **(DISENTANGLEMENT_HPARAMS if data.factors is not None else {})},
                      varied=varied)
    for line in settle_threads(trainer):
        log.info(line)
    if cpu_share.follows_load:
        logging.getLogger("vaebench.record").info(
            f"Threads: this run's training step gives the same numbers at 1 and {cpu_share.threads} threads (checked), "
            "so its training may take fewer while other work keeps its CPUs busy; what it records uses "
            f"{cpu_share.threads}.")
    threads = {"threads": cpu_share.threads, "threads_why": cpu_share.plan.why, "threads_follow_load": cpu_share.follows_load}
    what = (f"{entry_of('model', choices, type(model).__name__)} with {entry_of('prior', choices, type(model.prior).__name__)}, "
            f"{_objective_text(cfg, choices)}, beta={cfg.beta}, on {entry_of('dataset', choices, data.name)} "
            f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test) on {device}")
    if trainer.progress.epoch >= cfg.trainer.epochs or trainer.progress.stopped_early:  # e.g. stopped in its final evaluation
        log.info(f"Training is complete ({trainer.progress.epoch} of {cfg.trainer.epochs} epochs"
                 f"{', stopped early' if trainer.progress.stopped_early else ''}): only the final evaluation runs, of {what}.")
    else:
        log.info(f"Training {what}.")
    log.info(f"Run folder: {run_dir}")
    write_json(run_dir / "metrics.json", {"status": "running", "config": OmegaConf.to_container(cfg, resolve=True)})

    started = time.perf_counter()
    try:
        status = trainer.fit()
    except Stop as stop:
        write_json(run_dir / "metrics.json", {
            "status": stop.status, "message": stop.message, "epochs": trainer.progress.epoch,
            "step": trainer.progress.step, "config": OmegaConf.to_container(cfg, resolve=True)})
        board.close()
        if stop.status == "interrupted":
            if stop.then is not None:  # the job scheduler's own handler: submitit requeues the job, which resumes
                tell_failure(stop.message, "Handing the signal on to the job's scheduler, which requeues the job.")
                stop.then()
            tell_failure(stop.message, f"Resume with:  vaebench train resume={run_dir}")
            # A sweep stops too: Ctrl-C and SLURM's SIGTERM are meant for the whole process.
            sys.exit(130)
        tell_failure(stop.message)
        if not multirun:
            sys.exit(3)
        return {"status": stop.status}

    log.info(f"Evaluating the best checkpoint (epoch {trainer.progress.best_epoch}): every term and the ELBO "
             f"surgery on train, val and test, log p(x) from {cfg.eval.iw_samples} importance samples on test.")
    with cpu_share.recording():
        metrics = final_metrics(model, data, cfg, run_dir, device)
        metrics.update(disentanglement_record(model, data, cfg, board, trainer.progress.step))
    board.single_values("final", {tag: metrics[split][term] for tag in HPARAMS_METRICS
                                  for split, term in [tag.split("/")] if term in metrics[split]}, trainer.progress.step)
    board.text("summary", final_table_markdown(metrics, trainer.progress.best_epoch), trainer.progress.step)
    board.close()
    result = {
        "status": status,
        **metrics,
        "epochs": trainer.progress.epoch,
        "best_epoch": trainer.progress.best_epoch,
        "stopped": stop_reason(trainer.progress, cfg.trainer.epochs, cfg.trainer.patience, cfg.trainer.kl_warmup_epochs),
        "step": trainer.progress.step,
        "wall_time_s": trainer.progress.wall_time_s,
        "train_time_s": time.perf_counter() - started,
        "alarms": list(collapse.record["alarms"]),
        "restarts": restarts,
        **threads,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(run_dir / "metrics.json", result)
    discard_record(run_dir)
    _log_summary(result, run_dir, board_dir, multirun)
    return result


def _resumed_config(state: dict, cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's saved config with what `overrides` may change (RESUMABLE); refused, naming every key,
    where an override would change anything else. An override that gives the run's own value is no change
    (a job scheduler's restart runs the run's own command again)."""
    saved = OmegaConf.create(saved_config(state["config"]))
    changed = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "resume":
            continue
        if resumable(key):
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        elif _setting(cfg, key) != _setting(saved, key):
            changed.append(f"{key}={_setting(cfg, key)} (the run's own: {key}={_setting(saved, key)})")
    if changed:
        keys = [c.split("=", 1)[0] for c in changed]
        raise UserError(
            f"{'; '.join(changed)}: {'this changes' if len(changed) == 1 else 'these change'} what the run is, so a "
            f"resume cannot take {'it' if len(changed) == 1 else 'them'}. A resume may change only "
            f"{', '.join(RESUMABLE)}. Start a new run to change {', '.join(keys)}, or resume without "
            f"{'it' if len(changed) == 1 else 'them'}."
        )
    return saved


def resumable(key: str) -> bool:
    return key in RESUMABLE or any(key.startswith(r[:-1]) for r in RESUMABLE if r.endswith("*"))


def _setting(cfg: DictConfig, key: str):
    """A key's value as the user wrote it: a config group's choice (`prior` -> vamp), else the value."""
    choices = cfg.get("choices") or {}
    if key in choices:
        return choices[key]
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _objective_text(cfg: DictConfig, choices: dict) -> str:
    """e.g. `objective=iwae (k=5)`."""
    settings = ", ".join(f"{key}={value}" for key, value in _objective_settings(cfg).items())
    return entry_of("objective", choices, "elbo") + (f" ({settings})" if settings else "")


def _objective_settings(cfg: DictConfig) -> dict:
    node = cfg.get("objective") or {}
    return {str(key): node[key] for key in node if not str(key).startswith("_")}


def _objective_notes(objective, cfg: DictConfig, choices: dict) -> list[str]:
    """Settings the chosen objective does not read, said once so that a sweep's β axis is not misread."""
    if getattr(objective, "beta_weighs", "the KL") is not None:
        return []
    unused = [f"beta={cfg.beta}"] if float(cfg.beta) != 1.0 else []
    unused += [f"trainer.kl_warmup_epochs={cfg.trainer.kl_warmup_epochs}"] if cfg.trainer.kl_warmup_epochs else []
    if not unused:
        return []
    verb = "do" if len(unused) > 1 else "does"
    return [f"{entry_of('objective', choices)} has no beta: {' and '.join(unused)} {verb} not change what it optimises."]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log_summary(result: dict, run_dir: Path, board_dir: Path, multirun: bool) -> None:
    lines = final_table_lines(result, result["best_epoch"])
    lines += [f"\nOutputs:      {run_dir}  (metrics.json, test_points.npz, checkpoints/best.pt, checkpoints/last.pt, train.log)",
              f"TensorBoard:  tensorboard --logdir {run_dir if not multirun else run_dir.parent}"]
    if "disentanglement" in result:
        lines[-2:-2] = ["", *disentanglement_lines(result["disentanglement"], result["latent_factors"])]
    log.info("\n".join(lines))


def disentanglement_record(model, data, cfg, board: Board, step: int) -> dict:
    """For data with known factors, the best checkpoint's MIG, FactorVAE score and DCI (metrics.json's
    "disentanglement" block, which factor each dimension holds in "latent_factors"); {} otherwise."""
    if data.factors is None:
        return {}
    log.info("Disentanglement metrics of the posterior means: MIG, FactorVAE score, DCI.")
    scalars, details = disentanglement.of_model(model, data, cfg.eval.batch_size)
    board.single_values("final", {f"disentanglement/{name}": scalars[name] for name in disentanglement.METRIC_NAMES}, step)
    board.text("disentanglement", "\n\n".join(disentanglement_lines(scalars, details)), step)
    return {"disentanglement": scalars, "latent_factors": details}
