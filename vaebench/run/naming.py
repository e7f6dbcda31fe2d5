"""What a run is called: its TensorBoard name from the settings its command line gave, its HParams
(the sweep's axes first), and the end-of-run values the HParams dashboard shows."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from vaebench.config.checks import unused_arguments
from vaebench.config.components import target_of
from vaebench.config.groups import GROUPS

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


def board_name(cfg: DictConfig, overrides: list[str]) -> str:
    """The TensorBoard run's name tells the settings its command line gave that apply to it, e.g.
    `beta=4,prior=vamp` (not `prior.K=50` for the standard prior, which has no K); `defaults` when none."""
    keys = set(applying_overrides(cfg, overrides))
    items = sorted(o.lstrip("+~") for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys)
    name = ",".join(items).replace(os.sep, "_")[:200]
    return name or "defaults"


# Config groups whose chosen entry, not a value, is what a run shows (`spectrum`: a place on the prior axis).
GROUP_KEYS = ("dataset", "model", "prior", "trainer", "eval", "experiment", "spectrum")
NOT_IN_NAMES = ("resume", "trainer.device", "trainer.epochs", "trainer.progress", "hydra", "eval.", "dataset.root")


def applying_overrides(cfg: DictConfig, overrides: list[str]) -> list[str]:
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


def hparams(cfg: DictConfig, choices: dict, model, overrides: list[str]) -> dict:
    """prior, K, beta and the objective, then every other setting the command line set (a sweep's axes, which
    TensorBoard ticks first). Whole numbers as text (500, not 500.0000)."""
    # K as the prior built has it: none for a prior without components, even when a sweep grid sets
    # prior.K for every prior.
    k = getattr(model.prior, "K", None)
    params = {"prior": str(choices.get("prior", type(model.prior).__name__)), "K": "-" if k is None else str(k),
              "beta": float(cfg.beta), "objective": str(choices.get("objective", "elbo"))}
    for key in applying_overrides(cfg, overrides):
        name = hparam_name(key)
        value = choices.get(key) if key in GROUP_KEYS else OmegaConf.select(cfg, key, default=None)
        if name not in params and value is not None:
            params[name] = str(value) if isinstance(value, (int, bool)) else value
    return params


def hparam_name(key: str) -> str:
    return key if key.startswith("objective.") else key.split(".")[-1]  # objective.k, objective.gamma


def sweep_axes(hydra_cfg) -> set[str]:
    """The keys a sweep varies: its `hydra.sweeper.params` (an experiment's grid, an Optuna search space)
    and the command line's sweep overrides (`beta=1,2,4`), which a job sees only in the sweep's
    multirun.yaml. HParams shows these columns first."""
    return {override.key_or_group.lstrip("+~") for override in _sweep_overrides(hydra_cfg)}


def sweep_size(hydra_cfg) -> int | None:
    """How many runs the sweep has: the product of its axes' lengths; None for a search (Optuna's
    intervals) or where the sweep cannot be read."""
    size = 1
    for override in _sweep_overrides(hydra_cfg):
        try:
            size *= len(list(override.sweep_string_iterator()))
        except Exception:  # an interval or another sweep that is not a list
            return None
    return size


def _sweep_overrides(hydra_cfg) -> list:
    """The sweep overrides of the grid (`hydra.sweeper.params`) and of the command line, the latter from
    the sweep's multirun.yaml, the only place a job sees them; a later key replaces an earlier one."""
    params = OmegaConf.select(hydra_cfg, "sweeper.params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    try:
        lines += list(OmegaConf.load(Path(hydra_cfg.sweep.dir) / "multirun.yaml").hydra.overrides.task)
    except (OSError, AttributeError, KeyError, ValueError):  # a launcher without it: the grid's axes only
        pass
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # an override this Hydra cannot parse: no axes rather than no run
        return []
    by_key = {override.key_or_group.lstrip("+~"): override for override in parsed if override.is_sweep_override()}
    return list(by_key.values())
