"""The run's settings that are not components: the top-level keys and the `trainer` and `eval`
groups, with the values each may take. The YAML files in conf/ give the values and say what each
does; these classes say what is allowed, and `vaebench.config.validate.validate_config` holds a config to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from omegaconf import OmegaConf

from vaebench.config.checks import Count, NonNegative, NonNegativeInt, Positive, check_arguments


@dataclass(frozen=True)
class RunSettings:
    beta: NonNegative
    seed: NonNegativeInt
    resume: str | None


@dataclass(frozen=True)
class TrainerSettings:
    epochs: NonNegativeInt
    batch_size: Count
    lr: Positive
    kl_warmup_epochs: NonNegativeInt
    eval_every: Count
    patience: NonNegativeInt
    device: Literal["auto", "cpu", "cuda"]
    compile: bool | Literal["auto"]
    precision: Literal["fp32", "bf16"]
    log_every: Count
    threads: Count | None
    optimizer: Literal["adam", "adamnormgrad"] = "adam"  # a run saved before issue 39 trained with Adam


@dataclass(frozen=True)
class EvalSettings:
    batch_size: Count
    iw_samples: NonNegativeInt
    surgery_every: NonNegativeInt
    surgery_samples: Count
    surgery_points: Count | None
    split: Literal["train", "val", "test"]
    max_points: Count | None
    gap_points: NonNegativeInt = 0  # a run saved before the inference gaps measured none


# config key (None: the top level) -> the settings it holds
SETTINGS = {None: RunSettings, "trainer": TrainerSettings, "eval": EvalSettings}


def check_settings(cfg) -> None:
    """Raise UserError for the first setting (top level, trainer, eval) whose value is not allowed. Needs
    no torch: a command line's bad value is refused before torch is imported."""
    for where, settings in SETTINGS.items():
        if where is None:  # the top-level keys, not the groups
            node = OmegaConf.create({k: cfg[k] for k in cfg if not OmegaConf.is_config(cfg[k])})
        else:
            node = cfg[where]
        # A key added on purpose (+trainer.note=...) is kept in the record and read by nothing.
        check_arguments(node, where or "", settings, extra_keys_allowed=True)
