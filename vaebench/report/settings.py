"""What a sweep varied: the settings that differ between its runs (read from their configs, so a sweep
over any key, and a user's own component, needs no list of known names), which of them the figures put
on the x axis and which make the series, and how each is named."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vaebench.report.runs import BLOCKS, natural_key


# Settings are named by their dotted config key ("trainer.batch_size"), a config group by its name
# ("prior"). These keep the short names of the report's first version and of TensorBoard's HParams.
SHORT_NAMES = {"prior.K": "K", "model.latent_dim": "latent_dim", "trainer.lr": "lr"}


# The settings worth naming above the table even when every run shares them (groups are added).
HEADLINE_SETTINGS = ("prior.K", "beta", "model.latent_dim", "trainer.lr", "seed")


# Bookkeeping, not part of the experiment: a difference here is not something the sweep varied.
BOOKKEEPING = {"resume", "trainer.device", "trainer.progress"}


PRIOR_NAMES = {"standard": "standard", "vamp": "VampPrior", "mog": "MoG", "aggregate": "aggregate posterior"}


AXIS_NAMES = {"beta": "β (weight of the KL)", "prior.K": "K (prior components)",
              "model.latent_dim": "latent dimensions", "model.hidden_dim": "hidden units",
              "trainer.lr": "learning rate", "trainer.epochs": "epochs", "trainer.batch_size": "batch size"}


REPLICATE_KEY = "seed"


@dataclass(frozen=True)
class PlotAxes:
    """What the term plots put where: x is a numeric setting (None: the runs side by side, one tick
    each), series the other settings that varied, one colour per combination; seeds are averaged."""
    x: str | None
    series: tuple[str, ...]


def by_val_elbo(row: dict) -> tuple:
    elbo = row.get("val_elbo")
    return (elbo is None, -(elbo if elbo is not None else 0.0))


def setting_keys(rows: list[dict]) -> list[str]:
    """The settings of the rows: the groups (prior, model, ...) first, then the headline settings,
    then the rest A-Z."""
    terms = tuple(f"{split}_" for split in BLOCKS)
    keys = list(dict.fromkeys(k for row in rows for k in row if k != "run" and not k.startswith(terms)))
    groups = [key for key in keys if is_group(rows, key)]
    headline = [key for key in HEADLINE_SETTINGS if key in keys]
    return groups + headline + sorted(set(keys) - set(groups) - set(headline))


def is_group(rows: list[dict], key: str) -> bool:
    """A config group's choice ("prior": "vamp") rather than a top-level value such as beta."""
    return "." not in key and key not in HEADLINE_SETTINGS and key not in BOOKKEEPING \
        and isinstance(row_value(rows, key), str)


def row_value(rows: list[dict], key: str):
    """The first value of `key` that some row sets, or None."""
    return next((row[key] for row in rows if row.get(key) is not None), None)


def varied_settings(rows: list[dict]) -> list[str]:
    """The settings that differ between the runs, in setting_keys order. A setting a run leaves
    unset (None, or a key its component lacks) does not count as a difference, nor does a
    component's own default that differs only with the component (objective.gamma of capacity and
    of beta_tc in a sweep over objectives)."""
    return [key for key in setting_keys(rows) if key not in BOOKKEEPING
            and len({row.get(key) for row in rows if row.get(key) is not None}) > 1
            and not _follows_its_component(rows, key)]


def _follows_its_component(rows: list[dict], key: str) -> bool:
    """Whether `group.key` takes one value for each choice of its varied group `group`."""
    group = key.split(".", 1)[0]
    if group == key or not is_group(rows, group):
        return False
    values = {}
    for row in rows:
        if row.get(key) is not None:
            values.setdefault(row.get(group), set()).add(row[key])
    return len(values) > 1 and all(len(v) == 1 for v in values.values())


def is_numeric(rows: list[dict], key: str) -> bool:
    values = [row.get(key) for row in rows if row.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def choose_axes(rows: list[dict], varied: list[str]) -> PlotAxes:
    """x: beta when it varies, else the numeric setting with the most values; the other varied
    settings are the series. Seeds are never an axis: runs that differ only by seed are replicates."""
    numeric = [key for key in varied if key != REPLICATE_KEY and is_numeric(rows, key)]
    x = None
    if "beta" in numeric:
        x = "beta"
    elif numeric:
        x = max(numeric, key=lambda key: len({row.get(key) for row in rows}))  # first of the ties
    return PlotAxes(x, tuple(key for key in varied if key not in (x, REPLICATE_KEY)))


def short_name(key: str) -> str:
    return SHORT_NAMES.get(key, key)


def prior_label(row: dict, with_k: bool = True) -> str:
    """e.g. 'VampPrior K=500', 'standard' (whose K is blank), a user's prior by its own name."""
    name = row.get("prior")
    label = PRIOR_NAMES.get(name, str(name)) if name is not None else "prior"
    k = row.get("prior.K")
    return f"{label} K={k}" if with_k and k is not None else label


# Settings that the prior's name says (`prior_label`, and how a VampPrior's pseudo-inputs began and
# whether they learned), or that name a place of conf/spectrum/, which is made of them.
SAID_BY_THE_PRIOR = ("prior", "prior.K", "prior.learn_inputs", "prior.init", "spectrum")


def configuration_name(row: dict, keys, with_k: bool = True) -> str:
    """What the report calls the configuration of `row` among runs that differ in `keys` (seeds aside),
    in every table and figure: the prior first where one of `keys` is about it ('VampPrior K=500',
    'VampPrior K=500, training points' for pseudo-inputs fixed at training points), then each other key
    as typed ('beta=4', 'prior.learn_weights=True'); a key the run leaves unset is left out."""
    parts = []
    if any(key in SAID_BY_THE_PRIOR for key in keys):
        parts.append(prior_label(row, with_k) + _pseudo_inputs_text(row))
    parts += [f"{short_name(key)}={setting_text(row.get(key))}" for key in keys
              if key not in SAID_BY_THE_PRIOR and key != REPLICATE_KEY and row.get(key) is not None]
    return ", ".join(parts)


def _pseudo_inputs_text(row: dict) -> str:
    """How a VampPrior's pseudo-inputs began and whether they learned, where that is not the default
    (learned, from random pixels); nothing for a prior without them."""
    fixed, from_data = row.get("prior.learn_inputs") is False, row.get("prior.init") == "data"
    if fixed:
        return ", training points" if from_data else ", fixed random pseudo-inputs"
    return ", started at training points" if from_data else ""


def configurations(rows: list[dict], varied: list[str]) -> dict[tuple, list[dict]]:
    """The rows grouped by what the sweep varied, seeds aside; in the order of the sweep's runs."""
    keys = [key for key in varied if key != REPLICATE_KEY]
    groups: dict[tuple, list[dict]] = {}
    for row in sorted(rows, key=lambda row: natural_key(Path(row["run"]))):
        groups.setdefault(tuple((key, row.get(key)) for key in keys), []).append(row)
    return groups


def configuration_names(groups: dict[tuple, list[dict]]) -> dict[tuple, str]:
    """Each group of `configurations` by its `configuration_name`, or by every varied setting where
    two of those names collide."""
    named = {config: configuration_name(rows[0], [key for key, _ in config]) or "the runs"
             for config, rows in groups.items()}
    if len(set(named.values())) < len(named):
        named = {config: ", ".join(f"{short_name(key)}={setting_text(value)}" for key, value in config
                                   if value is not None) for config in groups}
    return named


def run_configurations(rows: list[dict], varied: list[str]) -> dict[str, str]:
    """{run folder: the name of its configuration}, for the table's column."""
    groups = configurations(rows, varied)
    names = configuration_names(groups)
    return {row["run"]: names[config] for config, members in groups.items() for row in members}


def series_label(row: dict, axes: PlotAxes) -> str:
    """The legend entry of a row's series: its configuration named by the settings the series vary
    (the prior when none does); K is left out where it is the x axis."""
    return configuration_name(row, axes.series or ("prior",), with_k=axes.x != "prior.K")


# -- the table ------------------------------------------------------------------------------------
def setting_text(value) -> str:
    """A setting as typed: 0.5, 4, vamp; blank when unset."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(setting_text(v) for v in value) + "]"
    return str(value)


def plot_key_name(axes: PlotAxes) -> str:
    """The `<key>` of `<term>_vs_<key>.png`: beta, K, latent_dim, ...; the series when no number varies."""
    if axes.x:
        return short_name(axes.x).replace(".", "_")
    return "_".join(short_name(key).replace(".", "_") for key in axes.series) or "run"


def axis_name(key: str) -> str:
    return AXIS_NAMES.get(key, short_name(key))


def legend_title(axes: PlotAxes) -> str:
    names = ["prior" if key in ("prior", "prior.K") else short_name(key) for key in axes.series]
    return ", ".join(dict.fromkeys(names)) or "prior"
