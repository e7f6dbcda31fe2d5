"""Reading a sweep's runs: each finished run folder's metrics.json and config as one row of settings
(by dotted key, each config group by its chosen name) and terms (`<split>_<term>`)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


SPLITS = ("train", "val", "test")


BLOCKS = (*SPLITS, "disentanglement")  # the blocks of metrics.json whose terms become `<block>_<term>` columns


@dataclass(frozen=True)
class Run:
    folder: str    # relative to the sweep folder
    metrics: dict  # metrics.json, config included


# -- reading --------------------------------------------------------------------------------------
def collect_runs(sweep_dir: Path) -> tuple[list[Run], Counter]:
    """Completed runs, and a count of the others by status. A run folder holds metrics.json, or
    .hydra/config.yaml alone while its run is still loading data."""
    folders = {p.parent for p in sweep_dir.rglob("metrics.json")}
    folders |= {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
    runs, unfinished = [], Counter()
    for folder in sorted(folders, key=natural_key):
        metrics = read_metrics(folder / "metrics.json")
        status = metrics.get("status", "unreadable") if metrics is not None else "starting"
        if status == "completed":
            runs.append(Run(str(folder.relative_to(sweep_dir)), metrics))
        else:
            unfinished[status] += 1
    return runs, unfinished


def read_metrics(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in path.parts]


def skipped_note(unfinished: Counter) -> str:
    """e.g. 'skipped 2 unfinished runs (1 running, 1 diverged)'; empty when nothing was skipped."""
    total = sum(unfinished.values())
    if not total:
        return ""
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(unfinished.items()))
    return f"skipped {total} unfinished run{'s' if total > 1 else ''} ({statuses})"


def component_name(config: dict, group: str) -> str | None:
    """The name of the run's `group` component: the Hydra choice (new records), else the component
    config's `name` (records written before components were built from `_target_`)."""
    choice = (config.get("choices") or {}).get(group)
    if choice is not None:
        return str(choice)
    component = config.get(group)
    return str(component["name"]) if isinstance(component, dict) and "name" in component else None


def component_groups(config: dict) -> list[str]:
    """The config groups the run chose a component from (Hydra's own groups left out)."""
    chosen = [group for group in (config.get("choices") or {}) if not group.startswith("hydra")]
    named = [key for key, value in config.items() if isinstance(value, dict) and "name" in value]
    return list(dict.fromkeys(chosen + named))


def run_settings(config: dict) -> dict:
    """Every setting of a run by dotted key, each config group by name ("prior": "vamp"). Class
    paths (_target_) are left out: the group's name already says which component ran."""
    groups = component_groups(config)
    settings = {group: component_name(config, group) for group in groups}
    for key, value in _leaves({k: v for k, v in config.items() if k != "choices"}):
        last = key.rsplit(".", 1)[-1]
        if last == "_target_" or (last == "name" and key.rsplit(".", 1)[0] in groups):
            continue
        settings[key] = value
    for group in groups:  # a sweep grid may set a key for every component; those that ignore it get a blank
        settings.update({f"{group}.{name}": None for name in _unused_arguments(config, group)
                         if f"{group}.{name}" in settings})
    return settings


def _unused_arguments(config: dict, group: str) -> set[str]:
    """The arguments the run's component of `group` declares unused (`vaebench.config.checks.Unused`); a run
    saved before `_target_` names its component, and the shipped entry of that name has the target."""
    entry = config.get(group) if isinstance(config.get(group), dict) else {}
    target = entry.get("_target_")
    if target is None and "name" in entry:
        from vaebench.config.saved import saved_config

        target = saved_config(config).get(group, {}).get("_target_")
    try:
        from hydra.utils import get_object

        from vaebench.config.checks import unused_arguments
        from vaebench.config.moved import current_target

        return unused_arguments(get_object(current_target(str(target)))) if target else set()
    except Exception:  # a user's component that cannot be imported from here: nothing is blanked
        return set()


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:  # lists become tuples so that settings can be compared and collected in sets
            yield f"{prefix}{key}", tuple(value) if isinstance(value, list) else value


# -- rows and what varies -------------------------------------------------------------------------
def table_row(run: Run) -> dict:
    """Every setting and every term of one run: settings by dotted key, terms as `<split>_<term>`
    and their standard errors as `<split>_<term>_se` where the run recorded them."""
    row = {"run": run.folder, **run_settings(run.metrics.get("config", {}))}
    for split in BLOCKS:
        for term, value in (run.metrics.get(split) or {}).items():
            row[f"{split}_{term}"] = value
    return row
