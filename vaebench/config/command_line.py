"""Refuse a bad command line before Hydra starts: a config group's unknown option (`prior=vampp`) and
a key no config has (`trainer.epoch=3`), each in one paragraph with the choices that exist."""

from __future__ import annotations

from vaebench.config.groups import GROUPS
from vaebench.config.saved import resume_checkpoint
from vaebench.errors import UserError


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
    if flags.config_dir and not os.path.isdir(flags.config_dir):
        raise UserError(f"--config-dir {flags.config_dir}: there is no such folder here ({os.getcwd()}). --config-dir "
                        "takes the folder that holds your own config groups (e.g. my_conf, with my_conf/prior/laplace.yaml), "
                        "as a path from where you run vaebench or an absolute one.")
    if flags.config_dir and not search:
        search = [f"hydra.searchpath=[file://{os.path.abspath(flags.config_dir)}]"]
    for override in overrides:  # before Hydra makes a folder for the run
        if override.key_or_group == "resume" and not override.is_sweep_override() and override.value():
            resume_checkpoint(override.value())
    with initialize_config_dir(config_dir, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for override in overrides:
            _check_choice(override, loader, [*flags.overrides, *search])
        _check_keys(overrides, loader, search)
        _check_settings(overrides, search)


def _check_settings(overrides, search: list[str]) -> None:
    """Refuse a bad value of a setting (`beta=-1`, `trainer.lr=fast`) before torch is imported: the config
    is composed with each combination of the command's values (at most 16 of a sweep) and its top-level,
    trainer and eval settings are checked (`settings.check_settings`; the run checks its components)."""
    import itertools

    from hydra import compose
    from hydra.errors import HydraException

    from vaebench.config.checks import check_arguments
    from vaebench.config.declared import stand_in
    from vaebench.config.groups import RUN_TIME_ARGUMENTS
    from vaebench.config.settings import check_settings

    axes = []
    for override in overrides:
        key = override.key_or_group
        if override.is_delete() or override.package or key.startswith("hydra"):
            continue
        if override.is_sweep_override() and not override.is_choice_sweep():
            return  # range() or glob(): Hydra expands them; the run checks each value
        prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.get_value_element_as_str()]
        axes.append([f"{prefix}{key}={value}" for value in values])
    for combination in itertools.islice(itertools.product(*axes), 16):
        try:
            cfg = compose("config", overrides=[*search, *combination], return_hydra_config=True)
        except HydraException:
            return  # Hydra's own composition error says what is wrong, when it runs
        check_settings(cfg)
        for group in GROUPS:  # each component's values against its declared arguments (`declared.py`)
            node = cfg.get(group)
            declared = stand_in(str(node["_target_"])) if node is not None and "_target_" in node else None
            if declared is not None:
                choice = cfg.hydra.runtime.choices.get(group)
                check_arguments(node, group, declared, RUN_TIME_ARGUMENTS[group], f"{group}={choice}" if choice else group)


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
