"""Refuse a bad configuration before any work starts, with one paragraph naming the key, the value
and what is allowed."""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf

from vaebench.data import BINARIZE, DATASETS
from vaebench.errors import UserError
from vaebench.models import MODELS
from vaebench.nets import GAUSSIAN_VARIANCES, LIKELIHOODS
from vaebench.priors import PRIORS


def _integer(minimum: int):
    return ("an integer >= %d" % minimum, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum)


def _number(minimum: float, strict: bool = False):
    text = f"a finite number {'>' if strict else '>='} {minimum:g}"

    def ok(v) -> bool:
        # Hydra reads `inf` and `nan` as floats; either would only surface later as a diverged run.
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return v > minimum if strict else v >= minimum

    return text, ok


def _choice(*choices):
    return "one of " + ", ".join(map(str, choices)), lambda v: v in choices


_BOOL = ("true or false", lambda v: isinstance(v, bool))

RULES = {
    "beta": _number(0),
    "seed": _integer(0),
    "trainer.epochs": _integer(0),
    "trainer.batch_size": _integer(1),
    "trainer.lr": _number(0, strict=True),
    "trainer.kl_warmup_epochs": _integer(0),
    "trainer.eval_every": _integer(1),
    "trainer.patience": _integer(0),
    "trainer.device": _choice("auto", "cpu", "cuda"),
    "trainer.compile": _BOOL,
    "trainer.precision": _choice("fp32", "bf16"),
    "trainer.log_every": _integer(1),
    "model.name": _choice(*MODELS),
    "model.latent_dim": _integer(1),
    "model.hidden_dim": _integer(1),
    "model.channels": _integer(1),
    "model.likelihood": _choice(*LIKELIHOODS),
    "model.gaussian_variance": _choice(*GAUSSIAN_VARIANCES),
    "prior.name": _choice(*PRIORS),
    "prior.sigma": _number(0, strict=True),
    "prior.K": _integer(1),
    "prior.init": _choice("random", "data"),
    "prior.learn_weights": _BOOL,
    "dataset.name": _choice(*DATASETS),
    "dataset.binarize": _choice(*BINARIZE),
    "dataset.val_size": _number(0),
    "dataset.test_size": _number(0),
    "eval.batch_size": _integer(1),
    "eval.iw_samples": _integer(0),
    "eval.surgery_every": _integer(0),
    "eval.surgery_samples": _integer(1),
    "eval.split": _choice("train", "val", "test"),
    "eval.max_points": _integer(1),
}


def validate_config(cfg) -> None:
    """Raise UserError for the first key whose value is out of its allowed range."""
    for key, (allowed, ok) in RULES.items():
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue
        value = OmegaConf.select(cfg, key)
        if value is None and key in ("eval.max_points", "prior.K"):
            continue  # optional: no limit / not used by this prior
        if not ok(value):
            shown = f"{value!r}" if isinstance(value, str) else str(value)
            raise UserError(f"{key}={shown} is not allowed: {key} must be {allowed}.")
    if cfg.dataset.name == "npz" and OmegaConf.is_missing(cfg.dataset, "path"):
        raise UserError("dataset=npz needs dataset.path=FILE.npz (an .npz file with an array `x`).")
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "trainer.device=cuda was asked for, but PyTorch sees no CUDA GPU on this machine. "
            "Use trainer.device=auto (GPU when there is one) or trainer.device=cpu."
        )


def validate_data(cfg, *splits: torch.Tensor) -> None:
    """The data must suit the likelihood and the binarisation. Pass every split: an out-of-range point
    left in val or test would only fail at the first evaluation."""
    splits = [x for x in splits if x.numel()]  # an empty split (val_size=0) has no min or max
    low, high = min(float(x.min()) for x in splits), max(float(x.max()) for x in splits)
    needs_unit = cfg.model.likelihood == "bernoulli" or cfg.dataset.binarize != "none"
    if needs_unit and (low < 0 or high > 1):
        raise UserError(
            f"dataset={cfg.dataset.name}: values lie in [{low:g}, {high:g}], but model.likelihood="
            f"{cfg.model.likelihood} with dataset.binarize={cfg.dataset.binarize} needs values in [0, 1]. "
            "Rescale the data, or use model.likelihood=gaussian dataset.binarize=none."
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
    if flags.config_dir or flags.config_path or flags.config_name:
        return  # the user's own config tree: Hydra checks its choices
    with initialize_config_dir(config_dir, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for override in overrides:
            _check_choice(override, loader, flags.overrides)
        _check_keys(overrides, loader)


def _check_keys(overrides, loader) -> None:
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
            cfg = compose("config", overrides=[f"{g}={v}" for g, v in zip(groups, choice)])
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
    existing = [str(k) for k in node.keys()]
    by_lower = {k.lower(): k for k in existing}
    close = difflib.get_close_matches(leaf.lower(), list(by_lower), n=1)
    prefix = f"{parent}." if parent else ""
    hint = f" Did you mean {prefix}{by_lower[close[0]]}?" if close else ""
    return (f"{key} is not a config key{where}.{hint} The keys of {parent or 'the config'} are: "
            f"{', '.join(prefix + k for k in existing)} (+{key}=VALUE would add it as a new key).")


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
            raise UserError(
                f"{group}={shown} is not an option of the config group {group}: "
                f"choose one of {', '.join(options)}."
            )
