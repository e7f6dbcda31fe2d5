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
    "test/amortization_gap": "test amortization gap", "test/approximation_gap": "test approximation gap",
}
# Beside those, for data with known factors (dataset=sprites, dsprites): metrics.json's "disentanglement" block.
DISENTANGLEMENT_HPARAMS = {"disentanglement/mig": "MIG", "disentanglement/factor_vae_score": "FactorVAE score",
                           "disentanglement/dci_disentanglement": "DCI disentanglement"}


def board_name(cfg: DictConfig, overrides: list[str]) -> str:
    """The TensorBoard run's name tells the settings its command line gave that apply to it and say what
    it is, e.g. `beta=4,prior=vamp` (not `prior.K=50` for the standard prior, which has no K, nor
    `trainer.epochs=3`, which HParams shows); `defaults` when none."""
    keys = set(applying_overrides(cfg, overrides))
    items = sorted(o.lstrip("+~") for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys)
    name = ",".join(items).replace(os.sep, "_")[:200]
    return name or "defaults"


# Config groups whose chosen entry, not a value, is what a run shows (`spectrum`: a place on the prior axis).
GROUP_KEYS = ("dataset", "model", "prior", "trainer", "eval", "experiment", "spectrum")
# Not settings of the run: where it resumes from, Hydra's own keys, where the data lies.
NOT_SETTINGS = ("resume", "hydra", "dataset.root")
# Nor in its TensorBoard name, which says what the run is: not where or how long it runs, or how it is measured.
NOT_IN_NAMES = (*NOT_SETTINGS, "trainer.device", "trainer.epochs", "trainer.progress", "eval.")
# The four columns every run has, and the keys that set them.
KEY_HPARAMS = {"prior": "prior", "prior.K": "K", "beta": "beta", "objective": "objective"}
# Groups whose settings keep their group in HParams: `eval.batch_size` is not the training's batch size,
# `objective.k` not the prior's K.
PREFIXED = ("objective.", "eval.")


def applying_overrides(cfg: DictConfig, overrides: list[str], leave_out: tuple[str, ...] = NOT_IN_NAMES) -> list[str]:
    """The keys the command line set, once each: not those starting with one of `leave_out` (by default
    what does not say what the run is), and not an argument its component declares unused (`checks.Unused`)."""
    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith(leave_out) or key in keys:
            continue
        group, _, argument = key.partition(".")
        if argument and group in GROUPS and argument in unused_arguments(target_of(cfg[group], group, group)):
            continue
        keys.append(key)
    return keys


def hparams(cfg: DictConfig, choices: dict, model, overrides: list[str], axes=frozenset()) -> tuple[dict, set[str]]:
    """prior, K, beta and the objective, then every other setting the command line gave that applies to the
    run (`trainer.epochs`, `eval.iw_samples`, `seed`, ...; not `resume`, Hydra's keys or `dataset.root`);
    whole numbers as text (500, not 500.0000). Also the names of the sweep's `axes` among them, which
    TensorBoard ticks first."""
    # K as the prior built has it: none for a prior without components, even when a sweep grid sets
    # prior.K for every prior.
    k = getattr(model.prior, "K", None)
    params = {"prior": str(choices.get("prior", type(model.prior).__name__)), "K": "-" if k is None else str(k),
              "beta": float(cfg.beta), "objective": str(choices.get("objective", "elbo"))}
    names = dict(KEY_HPARAMS)
    for key in applying_overrides(cfg, overrides, leave_out=NOT_SETTINGS):
        if key in KEY_HPARAMS:
            continue
        value = choices.get(key) if key in GROUP_KEYS else OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        name = hparam_name(key)
        if name in params:  # two keys ending alike (`model.hidden_dim`, `+encoder.hidden_dim`): both whole
            name = key
        names[key] = name
        params[name] = str(value) if isinstance(value, (int, bool)) else value
    return params, {names.get(key, hparam_name(key)) for key in axes}


def hparam_name(key: str) -> str:
    """The column of a setting: its last part (`model.hidden_dim` -> hidden_dim, `trainer.epochs` -> epochs),
    the whole key for `objective.*` and `eval.*`."""
    return key if key.startswith(PREFIXED) else key.split(".")[-1]


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
