"""The Hydra app behind `vaebench train`: compose the config, hand it to `compose.run`, and turn every
way a run can end (completed, refused, interrupted, failed) into what the user sees and what the run
folder's metrics.json records."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from vaebench.config.groups import GROUPS
from vaebench.config.saved import config_dir
from vaebench.errors import UserError
from vaebench.run.compose import run
from vaebench.run.final_evaluation import RECORD_NAME
from vaebench.run.naming import sweep_axes, sweep_size
from vaebench.run.requeue import started_again
from vaebench.run.threads import jobs_at_once, usable_cpus
from vaebench.run.record import recorded_status, tell_failure, write_json
from vaebench.views.console import configure as configure_console

log = logging.getLogger(__name__)  # the console and the run folder's train.log (conf/config.yaml)

_RUN_DIRS: dict[str, str] = {}


def run_dir_of(resume, default: str) -> str:
    """A resumed run's own folder; else `default` (outputs/DATE/TIME), or `default-2`, `-3`, ... when a
    run started in the same second has it (two `vaebench train` commands started together): the
    folder is made here, atomically, and the answer kept for this process's later lookups."""
    if resume:
        return str(resume)
    if default not in _RUN_DIRS:
        candidate, n = Path(default), 1
        while True:
            try:
                candidate.mkdir(parents=True)
                break
            except FileExistsError:
                n += 1
                candidate = Path(f"{default}-{n}")
        _RUN_DIRS[default] = str(candidate)
    return _RUN_DIRS[default]


# A resumed run writes into its own folder again and keeps the .hydra/ config of its first start.
OmegaConf.register_new_resolver("vaebench_run_dir", run_dir_of, replace=True)
OmegaConf.register_new_resolver("vaebench_output_subdir", lambda resume: None if resume else ".hydra", replace=True)
OmegaConf.register_new_resolver("vaebench_job_prefix", lambda mode, num: f"[#{num}] " if str(mode).endswith("MULTIRUN") else "",
                                replace=True)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    cfg = with_choices(cfg, hydra_cfg.runtime.choices)
    overrides = list(hydra_cfg.overrides.task)
    try:
        again = started_again(run_dir, cfg.resume)
    except UserError as err:  # another run's folder: refused, and that run's files left as they are
        tell_failure(f"{err}\n")
        if multirun:
            return -math.inf
        sys.exit(2)
    if again == "finished":
        logging.getLogger("vaebench").info(f"Started again by the job scheduler, but this run has ended "
                                           f"({recorded_status(run_dir)}, {run_dir}/metrics.json): nothing to do.")
        return sweep_objective(_recorded(run_dir))
    if again == "resume":  # the same job's command in its own folder: the checkpoint continues
        with open_dict(cfg):
            cfg.resume = str(run_dir)
    jobs = _jobs_at_once(hydra_cfg) if multirun else 1
    configure_console(prefix=f"[#{hydra_cfg.job.num}] " if multirun else "", bars=jobs == 1)
    try:
        with _sigterm_as_ctrl_c():
            result = run(cfg, run_dir, overrides, multirun, sweep_axes(hydra_cfg) if multirun else set(),
                         jobs=jobs, restarted=again == "resume")
        return sweep_objective(result)
    except KeyboardInterrupt:
        _interrupted_outside_training(cfg, run_dir)
    except UserError as err:
        if not multirun:
            tell_failure(f"{err}\n")
            _remove_refused_run(cfg, run_dir)
            sys.exit(2)
        # A sweep keeps the refused run's folder: its metrics.json says why, for the sweep's summary.
        _record_failure(cfg, run_dir, str(err))
        tell_failure(f"{err}\n", f"(this run of the sweep failed and is recorded in {run_dir}/metrics.json; the sweep goes on)")
        return -math.inf
    except Exception as err:
        _record_failure(cfg, run_dir, f"{type(err).__name__}: {err}")
        raise  # a bug rather than bad input: its traceback is what a report needs; Hydra goes on with a sweep


def _recorded(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _jobs_at_once(hydra_cfg) -> int:
    """The jobs of this sweep that the launcher runs side by side on this machine (joblib's n_jobs)."""
    launcher = str(OmegaConf.select(hydra_cfg, "launcher._target_", default=""))
    return jobs_at_once(launcher, OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=None), sweep_size(hydra_cfg),
                        usable_cpus()[0])


def with_choices(cfg: DictConfig, choices) -> DictConfig:
    """The config with `choices`: what each config group was set to (`prior: vamp`, or a user's
    `prior: laplace`), kept in the run's record for its name, HParams and the report."""
    chosen = {group: choice for group, choice in choices.items() if not group.startswith("hydra") and choice is not None}
    in_order = [g for g in GROUPS if g in chosen] + [g for g in chosen if g not in GROUPS]
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.choices = {group: chosen[group] for group in in_order}
    return cfg


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
    if not cfg.resume or recorded_status(run_dir) == "running":
        write_json(run_dir / "metrics.json", {"status": "interrupted", "message": message})
    tell_failure(message, *([f"Resume with:  vaebench train resume={run_dir}"] if can_resume else []))
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
    if cfg.resume and recorded_status(run_dir) != "running":
        return
    write_json(run_dir / "metrics.json", {"status": "failed", "error": error})


def sweep_objective(result: dict) -> float:
    """What a Hydra sweeper (Optuna, direction=maximize) maximises: the final validation ELBO. A run
    that did not complete scores -inf, the worst value, so the study goes on; NaN would stop it."""
    if result.get("status") != "completed":
        return -math.inf
    return float(result["val"]["elbo"])
