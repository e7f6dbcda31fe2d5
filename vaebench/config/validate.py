"""Refuse a bad configuration before any work starts, with one paragraph naming the key, the value
and what is allowed."""

from __future__ import annotations

import torch

from vaebench.config.components import check_component, entry_of
from vaebench.config.groups import GROUPS
from vaebench.config.settings import check_settings
from vaebench.errors import UserError


def validate_config(cfg, choices: dict | None = None) -> None:
    """Raise UserError for the first setting whose value is not allowed: each component entry against
    its `_target_`'s signature, the other settings against `vaebench.config.settings`. `choices` (the run's
    config-group choices) names entries in messages, e.g. `prior=vamp`."""
    choices = choices or {}
    check_settings(cfg)
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
