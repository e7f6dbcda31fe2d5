"""Refuse a bad configuration before any work starts, with one paragraph naming the key, the value
and what is allowed."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from vaebench.checkpoint import resume_checkpoint
from vaebench.checks import check_arguments
from vaebench.components import GROUPS, check_component, entry_of
from vaebench.errors import UserError
from vaebench.settings import SETTINGS


def validate_config(cfg, choices: dict | None = None) -> None:
    """Raise UserError for the first setting whose value is not allowed: each component entry against
    its `_target_`'s signature, the other settings against `vaebench.settings`. `choices` (the run's
    config-group choices) names entries in messages, e.g. `prior=vamp`."""
    choices = choices or {}
    for where, settings in SETTINGS.items():
        if where is None:  # the top-level keys, not the groups
            node = OmegaConf.create({k: cfg[k] for k in cfg if not OmegaConf.is_config(cfg[k])})
        else:
            node = cfg[where]
        # A key added on purpose (+trainer.note=...) is kept in the record and read by nothing.
        check_arguments(node, where or "", settings, extra_keys_allowed=True)
    for group in GROUPS:
        check_component(cfg[group], group, entry_of(group, choices))
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "trainer.device=cuda was asked for, but PyTorch sees no CUDA GPU on this machine. "
            "Use trainer.device=auto (GPU when there is one) or trainer.device=cpu."
        )


def validate_data(model, data, choices: dict | None = None) -> None:
    """A Bernoulli likelihood needs values in [0, 1]. Every split is checked: an out-of-range point
    left in val or test would only fail at the first evaluation. (Binarised data were checked when
    they were binarised.)"""
    if getattr(getattr(model, "likelihood", None), "kind", None) != "bernoulli":
        return
    splits = [x for x in (data.train, data.val, data.test) if x.numel()]  # an empty split has no min or max
    low, high = min(float(x.min()) for x in splits), max(float(x.max()) for x in splits)
    if low < 0 or high > 1:
        dataset = (choices or {}).get("dataset") or data.name
        raise UserError(
            f"dataset={dataset}: values lie in [{low:g}, {high:g}], but model.likelihood=bernoulli needs values "
            "in [0, 1]. Rescale the data, or use model.likelihood=gaussian dataset.binarize=none."
        )


def device_for(cfg) -> torch.device:
    if cfg.trainer.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.trainer.device)
    job_num = _parallel_sweep_job() if device.type == "cuda" else None
    if job_num is not None and torch.cuda.device_count() > 1:
        device = torch.device("cuda", gpu_for_job(job_num, torch.cuda.device_count()))
        # Later CUDA calls that name no device (and the CUDA context itself) go to this GPU, not GPU 0.
        torch.cuda.set_device(device)
    return device


def gpu_for_job(job_num: int, gpu_count: int) -> int:
    """Round-robin: the jobs a parallel launcher runs side by side land on different GPUs."""
    return job_num % gpu_count


def _parallel_sweep_job() -> int | None:
    """hydra.job.num when Hydra's joblib launcher runs this job beside others; None otherwise (a single
    run, the basic launcher's one-at-a-time sweep, or SLURM, which gives each job its own GPUs)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if "joblib" not in str(OmegaConf.select(hydra_cfg, "launcher._target_", default="")):
        return None
    return int(hydra_cfg.job.num)


def validate_choices(args: list[str], config_dir: str) -> None:
    """Refuse `prior=vampp` before Hydra starts. Hydra refuses it too, but its message sits among its
    config search path, and a sweep would stop only when it reaches the bad run."""
    import argparse
    import os

    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = get_args_parser()
    parser.exit_on_error = False
    try:
        flags, _ = parser.parse_known_args(args)
        overrides = OverridesParser.create().parse_overrides(flags.overrides)
    except (argparse.ArgumentError, HydraException):
        return  # malformed command line: Hydra's own message says what is wrong with it
    if flags.config_path or flags.config_name:
        return  # another primary config: Hydra checks its choices
    # A user's config folder joins the search path: given as hydra.searchpath=[...], or as Hydra's --config-dir.
    search = [o for o in flags.overrides if o.startswith("hydra.searchpath=")]
    if flags.config_dir and os.path.isdir(flags.config_dir) and not search:
        search = [f"hydra.searchpath=[file://{os.path.abspath(flags.config_dir)}]"]
    for override in overrides:  # before Hydra makes a folder for the run
        if override.key_or_group == "resume" and not override.is_sweep_override() and override.value():
            resume_checkpoint(override.value())
    with initialize_config_dir(config_dir, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for override in overrides:
            _check_choice(override, loader, [*flags.overrides, *search])
        _check_keys(overrides, loader, search)


def _check_keys(overrides, loader, search: list[str]) -> None:
    """Refuse `trainer.epoch=3` (a key no config has) with the keys that exist, before Hydra's own
    multi-line message. The config is composed with each combination of the group choices the
    command names (`prior=standard,vamp` composes both), since the keys depend on them."""
    import itertools

    from hydra import compose
    from hydra.errors import HydraException

    groups, keys = {}, []
    for override in overrides:
        group, is_group = override.key_or_group, _is_group(override, loader)
        if is_group and not override.is_delete():
            if override.is_sweep_override() and not override.is_choice_sweep():
                return  # glob() or range() over a group: Hydra expands it
            prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""  # +experiment=...
            groups[prefix + group] = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        elif not is_group and not (override.is_add() or override.is_force_add() or override.is_delete()
                                   or override.package or group.startswith("hydra.") or group.startswith("hydra/")):
            keys.append(group)
    if not keys:
        return
    for choice in itertools.islice(itertools.product(*groups.values()), 16):
        try:
            cfg = compose("config", overrides=[*search, *(f"{g}={v}" for g, v in zip(groups, choice))])
        except HydraException:
            return  # Hydra's own composition error says what is wrong, when it runs
        for key in keys:
            if not _has_key(cfg, key):
                raise UserError(_unknown_key_message(cfg, key, dict(zip(groups, choice))))


def _has_key(cfg, key: str) -> bool:
    """Whether `key` exists, also when its value is still ??? (to be given on the command line)."""
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return OmegaConf.is_dict(node) and leaf in node.keys()


def _is_group(override, loader) -> bool:
    parent, _, leaf = override.key_or_group.rpartition("/")
    return leaf in loader.list_groups(parent)


def _unknown_key_message(cfg, key: str, choices: dict) -> str:
    import difflib

    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    where = f" with {' '.join(f'{g}={v}' for g, v in choices.items())}" if choices else ""
    if not OmegaConf.is_dict(node):
        return f"{key} is not a config key: {parent or key} has no keys{where}."
    existing = [str(k) for k in node.keys() if not str(k).startswith("_")]
    by_lower = {k.lower(): k for k in existing}
    close = difflib.get_close_matches(leaf.lower(), list(by_lower), n=1)
    prefix = f"{parent}." if parent else ""
    hint = f" Did you mean {prefix}{by_lower[close[0]]}?" if close else ""
    # A component's keys are its arguments: a new one would only be refused as not being one.
    adding = "" if parent in GROUPS else f" (+{key}=VALUE would add it as a new key)"
    return (f"{key} is not a config key{where}.{hint} The keys of {parent or 'the config'} are: "
            f"{', '.join(prefix + k for k in existing)}{adding}.")


def _check_choice(override, loader, all_overrides: list[str]) -> None:
    from hydra.core.override_parser.types import ValueType

    group = override.key_or_group
    if override.is_delete() or not _is_group(override, loader):
        return  # a config key such as prior.K, not a group
    if override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
        values = list(override.sweep_string_iterator())
    elif override.is_sweep_override():
        return  # glob() or range(): Hydra expands those against the options itself
    else:
        values = [override.value()]
    options = loader.get_group_options(group, config_name="config", overrides=all_overrides)
    for value in values:
        if value not in options and "${" not in str(value):
            shown = "null" if value is None else value
            plugins = (" Hydra's launchers and sweepers (joblib, submitit's slurm, optuna) come with "
                       'pip install -e ".[sweep]" (pip install "vaebench[sweep]" for an installed vaebench).'
                       if group.startswith("hydra/") else "")
            raise UserError(
                f"{group}={shown} is not an option of the config group {group}: "
                f"choose one of {', '.join(options)}.{plugins}"
            )
