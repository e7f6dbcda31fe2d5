"""Where the shipped config tree lives, and reading a run's saved config, also one written by an
earlier vaebench."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from omegaconf import OmegaConf

from vaebench.config.groups import GROUPS
from vaebench.config.moved import current_target
from vaebench.errors import UserError

SETTINGS_GROUPS = ("trainer", "eval")


def config_dir() -> str:
    """conf/ ships inside the installed package as vaebench/conf; a source checkout has it at the top."""
    try:
        installed = importlib.resources.files("vaebench.conf")
        if installed.joinpath("config.yaml").is_file():
            return str(installed)
    except ModuleNotFoundError:
        pass
    return str(Path(__file__).resolve().parents[2] / "conf")


def saved_config(config: dict) -> dict:
    """A run's config as this vaebench reads it.

    Runs saved before components were built from `_target_` name their dataset, model and prior
    with a `name` key: the shipped entry of that name gives the `_target_`, and the name becomes the
    run's choice of that group. Runs saved before the objective group trained the β-ELBO. Settings
    added to `trainer` and `eval` since take their defaults. A `_target_` that names a component by a
    home it has left (`vaebench.data.mnist5k`) names it by its home now (`config.moved`)."""
    config = OmegaConf.to_container(OmegaConf.create(config))  # a copy
    choices = config.setdefault("choices", {})
    for group in GROUPS:
        entry = config.get(group)
        if isinstance(entry, dict) and "_target_" not in entry and "name" in entry:
            name = entry.pop("name")
            shipped = OmegaConf.load(Path(config_dir()) / group / f"{name}.yaml")
            config[group] = {"_target_": shipped["_target_"], **entry}
            choices.setdefault(group, name)
        if isinstance(config.get(group), dict) and "_target_" in config[group]:
            config[group]["_target_"] = current_target(str(config[group]["_target_"]))
    if "objective" not in config:  # saved before objectives were a config group: the beta-ELBO
        config["objective"] = {"_target_": OmegaConf.load(Path(config_dir()) / "objective" / "elbo.yaml")["_target_"]}
        choices.setdefault("objective", "elbo")
    for group in SETTINGS_GROUPS:
        defaults = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / group / "default.yaml"))
        config[group] = {**defaults, **config.get(group, {})}
    return config


def resume_checkpoint(resume) -> Path:
    """The checkpoint that `resume=RUN_DIR` continues: RUN_DIR/checkpoints/last.pt."""
    last = Path(str(resume)) / "checkpoints" / "last.pt"
    if not last.is_file():
        raise UserError(
            f"resume={resume}: there is no checkpoint {last}. resume= takes the folder of an earlier run, "
            "the one that holds checkpoints/last.pt (e.g. resume=outputs/2026-11-25/10-00-00)."
        )
    return last
