"""The Hydra app behind `vaebench train`: compose the config, build data, model and trainer, train,
and leave a run folder with TensorBoard events, checkpoints and metrics.json."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from vaebench import checkpoint, disentanglement
from vaebench.board import Board
from vaebench.checks import unused_arguments
from vaebench.collapse import CollapseWatch, dimensions_in_use
from vaebench.components import GROUPS, build_dataset, build_model, build_objective, entry_of, prior_notes, target_of
from vaebench.config_tree import config_dir, saved_config
from vaebench.errors import UserError
from vaebench.evaluate import format_estimate
from vaebench.final_evaluation import RECORD_NAME, discard_record, final_metrics
from vaebench.pictures import log_pictures
from vaebench.trainer import Stop, Trainer
from vaebench.validate import device_for, validate_config, validate_data

log = logging.getLogger(__name__)  # the console and the run folder's train.log (conf/config.yaml)

# Keys a resumed run may change; everything else defines the experiment and comes from its checkpoint.
RESUMABLE_PREFIXES = ("trainer.", "eval.", "resume")
# The end-of-run values in HParams, by their names there; TensorBoard ticks the first five.
HPARAMS_METRICS = {
    "test/log_likelihood": "test log p(x)", "val/elbo": "val ELBO", "val/kl": "val rate (KL)",
    "val/mutual_info": "val I(n;z)", "val/marginal_kl": "val KL(q(z)||p(z))",
    "val/reconstruction": "val E[log p(x|z)]", "val/active_units": "val active units", "test/elbo": "test ELBO",
    "train/elbo": "train ELBO", "train/mutual_info": "train I(n;z)", "train/marginal_kl": "train KL(q(z)||p(z))",
}
# Beside those, for data with known factors (dataset=sprites, dsprites): metrics.json's "disentanglement" block.
DISENTANGLEMENT_HPARAMS = {"disentanglement/mig": "MIG", "disentanglement/factor_vae_score": "FactorVAE score",
                           "disentanglement/dci_disentanglement": "DCI disentanglement"}


# A resumed run writes into its own folder again and keeps the .hydra/ config of its first start.
OmegaConf.register_new_resolver("vaebench_run_dir", lambda resume, default: str(resume) if resume else default, replace=True)
OmegaConf.register_new_resolver("vaebench_output_subdir", lambda resume: None if resume else ".hydra", replace=True)
OmegaConf.register_new_resolver("vaebench_job_prefix", lambda mode, num: f"[#{num}] " if str(mode).endswith("MULTIRUN") else "",
                                replace=True)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    cfg = with_choices(cfg, hydra_cfg.runtime.choices)
    try:
        with _sigterm_as_ctrl_c():
            result = run(cfg, run_dir, list(hydra_cfg.overrides.task), multirun, sweep_axes(hydra_cfg) if multirun else set())
        return sweep_objective(result)
    except KeyboardInterrupt:
        _interrupted_outside_training(cfg, run_dir)
    except UserError as err:
        if not multirun:
            _tell_failure(f"{err}\n")
            _remove_refused_run(cfg, run_dir)
            sys.exit(2)
        # A sweep keeps the refused run's folder: its metrics.json says why, for the sweep's summary.
        _record_failure(cfg, run_dir, str(err))
        _tell_failure(f"{err}\n", f"(this run of the sweep failed and is recorded in {run_dir}/metrics.json; the sweep goes on)")
        return -math.inf
    except Exception as err:
        _record_failure(cfg, run_dir, f"{type(err).__name__}: {err}")
        raise  # a bug rather than bad input: its traceback is what a report needs; Hydra goes on with a sweep


def with_choices(cfg: DictConfig, choices) -> DictConfig:
    """The config with `choices`: what each config group was set to (`prior: vamp`, or a user's
    `prior: laplace`), kept in the run's record for its name, HParams and the report."""
    chosen = {group: choice for group, choice in choices.items() if not group.startswith("hydra") and choice is not None}
    in_order = [g for g in GROUPS if g in chosen] + [g for g in chosen if g not in GROUPS]
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.choices = {group: chosen[group] for group in in_order}
    return cfg


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
    kept = (" (what it finished is kept in checkpoints/final_evaluation.pt, and a resumed run goes on from there)"
            if (run_dir / "checkpoints" / RECORD_NAME).is_file() else "")
    message = "Interrupted " + (f"after training; the final evaluation did not finish{kept}." if can_resume
                                else "before training started; there is nothing to resume.")
    if not cfg.resume or _status(run_dir) == "running":
        _write_json(run_dir / "metrics.json", {"status": "interrupted", "message": message})
    _tell_failure(message, *([f"Resume with:  vaebench train resume={run_dir}"] if can_resume else []))
    sys.exit(130)


def _remove_refused_run(cfg: DictConfig, run_dir: Path) -> None:
    """A refused single run leaves nothing behind: the folder Hydra made for it holds no work (a
    resumed run's folder is the earlier run's own, and stays)."""
    if cfg.resume or (run_dir / "checkpoints").exists():
        return
    for handler in logging.getLogger("vaebench").handlers + logging.getLogger("vaebench.record").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()  # train.log
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in run_dir.parents:  # outputs/DATE, then outputs, when nothing else is in them
        if parent == Path.cwd() or not parent.is_relative_to(Path.cwd()):
            break
        try:
            parent.rmdir()
        except OSError:
            break


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


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], multirun: bool, axes: set[str] = frozenset()) -> dict:
    state = None
    if cfg.resume:
        state = checkpoint.load(checkpoint.resume_checkpoint(cfg.resume))
        cfg = _resumed_config(state, cfg, overrides)
    choices = dict(cfg.get("choices") or {})
    validate_config(cfg, choices)
    _seed_everything(int(cfg.seed))
    device = device_for(cfg)
    data = build_dataset(cfg.dataset, int(cfg.seed), entry_of("dataset", choices)).to(device)
    model = build_model(cfg, data.data_shape, data.scored("train"), choices).to(device)
    validate_data(model, data, choices)
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

    board_dir = run_dir / (state["board_dir"] if state else _board_name(cfg, overrides))
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

    trainer = Trainer(model, data, cfg, run_dir, board, on_evaluation, objective=objective,
                      extra_state={"board_dir": board_dir.name, "collapse_watch": collapse.record})
    if state:
        trainer.load_state(state)
        log.info(f"Resuming {run_dir} from epoch {trainer.progress.epoch}, step {trainer.progress.step}.")
    else:
        board.hparams(_hparams(cfg, choices, model, overrides),
                      {**HPARAMS_METRICS, **(DISENTANGLEMENT_HPARAMS if data.factors is not None else {})},
                      varied={_hparam_name(key) for key in axes})
    what = (f"{entry_of('model', choices, type(model).__name__)} with {entry_of('prior', choices, type(model.prior).__name__)}, "
            f"{_objective_text(cfg, choices)}, beta={cfg.beta}, on {entry_of('dataset', choices, data.name)} "
            f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test) on {device}")
    if trainer.progress.epoch >= cfg.trainer.epochs:  # e.g. a run stopped during its final evaluation
        log.info(f"Training is complete ({trainer.progress.epoch} of {cfg.trainer.epochs} epochs): "
                 f"only the final evaluation runs, of {what}.")
    else:
        log.info(f"Training {what}.")
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

    log.info(f"Evaluating the best checkpoint (epoch {trainer.progress.best_epoch}): every term and the ELBO "
             f"surgery on train, val and test, log p(x) from {cfg.eval.iw_samples} importance samples on test.")
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
        "step": trainer.progress.step,
        "wall_time_s": trainer.progress.wall_time_s,
        "train_time_s": time.perf_counter() - started,
        "alarms": list(collapse.record["alarms"]),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    _write_json(run_dir / "metrics.json", result)
    discard_record(run_dir)
    _log_summary(result, run_dir, board_dir, multirun)
    return result


def _resumed_config(state: dict, cfg: DictConfig, overrides: list[str]) -> DictConfig:
    saved = OmegaConf.create(saved_config(state["config"]))
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


def _board_name(cfg: DictConfig, overrides: list[str]) -> str:
    """The TensorBoard run's name tells the settings its command line gave that apply to it, e.g.
    `beta=4,prior=vamp` (not `prior.K=50` for the standard prior, which has no K); `defaults` when none."""
    keys = set(_applying_overrides(cfg, overrides))
    items = sorted(o.lstrip("+~") for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys)
    name = ",".join(items).replace(os.sep, "_")[:200]
    return name or "defaults"


# Config groups whose chosen entry, not a value, is what a run shows (`spectrum`: a place on the prior axis).
GROUP_KEYS = ("dataset", "model", "prior", "trainer", "eval", "experiment", "spectrum")
NOT_IN_NAMES = ("resume", "trainer.device", "trainer.epochs", "trainer.progress", "hydra", "eval.", "dataset.root")


def _applying_overrides(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The keys the command line set that say what the run is: not where or how long it runs, and not
    an argument its component declares unused (`checks.Unused`)."""
    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith(NOT_IN_NAMES) or key in keys:
            continue
        group, _, argument = key.partition(".")
        if argument and group in GROUPS and argument in unused_arguments(target_of(cfg[group], group, group)):
            continue
        keys.append(key)
    return keys


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


def _hparams(cfg: DictConfig, choices: dict, model, overrides: list[str]) -> dict:
    """prior, K, beta and the objective, then every other setting the command line set (a sweep's axes, which
    TensorBoard ticks first). Whole numbers as text (500, not 500.0000)."""
    # K as the prior built has it: none for a prior without components, even when a sweep grid sets
    # prior.K for every prior.
    k = getattr(model.prior, "K", None)
    params = {"prior": str(choices.get("prior", type(model.prior).__name__)), "K": "-" if k is None else str(k),
              "beta": float(cfg.beta), "objective": str(choices.get("objective", "elbo"))}
    for key in _applying_overrides(cfg, overrides):
        name = _hparam_name(key)
        value = choices.get(key) if key in GROUP_KEYS else OmegaConf.select(cfg, key, default=None)
        if name not in params and value is not None:
            params[name] = str(value) if isinstance(value, (int, bool)) else value
    return params


def _hparam_name(key: str) -> str:
    return key if key.startswith("objective.") else key.split(".")[-1]  # objective.k, objective.gamma


def sweep_axes(hydra_cfg) -> set[str]:
    """The keys a sweep varies: its `hydra.sweeper.params` (an experiment's grid, an Optuna search space)
    and the command line's sweep overrides (`beta=1,2,4`), which a job sees only in the sweep's
    multirun.yaml. HParams shows these columns first."""
    params = OmegaConf.select(hydra_cfg, "sweeper.params") or {}
    axes = {key.lstrip("+~") for key in params}
    try:
        task = OmegaConf.load(Path(hydra_cfg.sweep.dir) / "multirun.yaml").hydra.overrides.task
    except (OSError, AttributeError, KeyError, ValueError):  # a launcher without it: the grid's axes only
        return axes
    return axes | {o.key_or_group for o in OverridesParser.create().parse_overrides(list(task)) if o.is_sweep_override()}


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


def final_table_markdown(metrics: dict, best_epoch: int) -> str:
    """The final table of the console, in markdown, for TensorBoard's TEXT dashboard."""
    splits = ("train", "val", "test")
    terms = [t for t in SUMMARY_TERMS if any(t in metrics[split] for split in splits)]
    lines = [f"Final terms, nats per point, ± standard error; best checkpoint (epoch {best_epoch}):", "",
             "| term | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    lines += [f"| {t} | " + " | ".join(format_estimate(metrics[split], t, 0) for split in splits) + " |" for t in terms]
    return "\n".join(lines)


def _log_summary(result: dict, run_dir: Path, board_dir: Path, multirun: bool) -> None:
    splits = ("train", "val", "test")
    terms = [t for t in SUMMARY_TERMS if any(t in result[split] for split in splits)]
    lines = [f"\nFinal terms (nats per point, ± standard error; best checkpoint, epoch {result['best_epoch']}):",
             f"  {'term':<18}" + "".join(f"{split:>20}" for split in splits)]
    lines += [f"  {t:<18}" + "".join(format_estimate(result[split], t) for split in splits) for t in terms]
    lines += [f"\nOutputs:      {run_dir}  (metrics.json, checkpoints/best.pt, checkpoints/last.pt, train.log)",
              f"TensorBoard:  tensorboard --logdir {run_dir if not multirun else run_dir.parent}"]
    if "disentanglement" in result:
        lines[-2:-2] = ["", *disentanglement.summary_lines(result["disentanglement"], result["latent_factors"])]
    log.info("\n".join(lines))


def disentanglement_record(model, data, cfg, board: Board, step: int) -> dict:
    """For data with known factors, the best checkpoint's MIG, FactorVAE score and DCI (metrics.json's
    "disentanglement" block, which factor each dimension holds in "latent_factors"); {} otherwise."""
    if data.factors is None:
        return {}
    log.info("Disentanglement metrics of the posterior means: MIG, FactorVAE score, DCI.")
    scalars, details = disentanglement.of_model(model, data, cfg.eval.batch_size)
    board.single_values("final", {f"disentanglement/{name}": scalars[name] for name in disentanglement.METRIC_NAMES}, step)
    board.text("disentanglement", "\n\n".join(disentanglement.summary_lines(scalars, details)), step)
    return {"disentanglement": scalars, "latent_factors": details}
