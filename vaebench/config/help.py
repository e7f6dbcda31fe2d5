"""`vaebench train --help`: the config groups with their options and what each setting does, read
from conf/'s YAML files and their comments, without importing Hydra or torch (a fraction of a second)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from vaebench.config.groups import GROUPS

SETTING = re.compile(r"^(\w+):\s*(.*?)\s*(?:#\s?(.*))?$")
WIDTH = 100


def train_help(config_dir: str) -> str:
    conf = Path(config_dir)
    defaults = _defaults(conf / "config.yaml")
    lines = ["vaebench train [OVERRIDES...]: train one VAE and log every ELBO term to TensorBoard.",
             "A sweep: vaebench train -m beta=1,2,4,8 prior=standard,vamp", "",
             "Config groups: group=option (the default marked *); each option's own keys can be set too, e.g. prior.K=50:"]
    groups = [g for g in GROUPS if (conf / g).is_dir()] + sorted(
        p.name for p in conf.iterdir() if p.is_dir() and p.name not in GROUPS and p.name not in ("hydra", "__pycache__"))
    for group in groups:
        if group in ("trainer", "eval"):
            continue
        lines.append(f"  {group}:")
        for option in sorted(conf.glob(f"{group}/*.yaml")):
            mark = "*" if defaults.get(group) == option.stem else " "
            lines += _wrapped(f"   {mark}{option.stem:<20}", _summary(option))
    lines += ["", "Settings (key=default: what it does):"]
    lines += _settings(conf / "config.yaml", "")
    for group in ("trainer", "eval"):
        lines += _settings(conf / group / "default.yaml", f"{group}.")
    lines += ["", "The VampPrior paper's rows: vaebench train +experiment=vampprior_mnist (add dataset=mnist5k offline).",
              "Continue a run: vaebench train resume=RUN_DIR trainer.epochs=N. The composed config: vaebench train --cfg job.",
              "Hydra's own flags: vaebench train --hydra-help. More: README.md and docs/."]
    return "\n".join(lines)


def _defaults(config: Path) -> dict[str, str]:
    """group -> the option config.yaml's defaults list picks."""
    chosen = {}
    for line in config.read_text().splitlines():
        match = re.match(r"^\s+-\s+(\w+):\s*(\w+)", line)
        if match:
            chosen[match.group(1)] = match.group(2)
    return chosen


def _summary(option: Path) -> str:
    """An option's first comment sentence(s): its description, above its keys."""
    said = []
    for line in option.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        said.append(line.lstrip("#").strip())
    text = " ".join(said)
    first = re.split(r"(?<!al)\.\s+(?=[A-Z(])", text, maxsplit=1)[0] if text else ""
    first = first.rstrip(":.")
    return (first if len(first) <= 160 else first[:157].rsplit(" ", 1)[0] + " ...") or "(no description)"


def _settings(file: Path, prefix: str) -> list[str]:
    """`key=value: comment` for each top-level setting of a YAML file (not the defaults list, not hydra),
    continuing a comment onto the comment-only lines below it."""
    entries: list[list[str]] = []
    skipping = False
    for line in file.read_text().splitlines():
        if line.startswith((" ", "\t")) and not line.strip().startswith("#"):
            continue  # a nested key (the defaults list, hydra's settings)
        if line.startswith((" ", "\t")) and entries and not skipping:
            entries[-1][2] += " " + line.strip().lstrip("#").strip()  # the comment goes on
            continue
        match = SETTING.match(line)
        if not match:
            continue
        key, value, comment = match.groups()
        skipping = key in ("defaults", "hydra") or value == ""
        if not skipping:
            entries.append([key, value, comment or ""])
    lines = []
    for key, value, comment in entries:
        lines += _wrapped(f"  {prefix}{key}={value}".ljust(32), comment)
    return lines


def _wrapped(head: str, text: str) -> list[str]:
    """`head`, then `text` wrapped beside it, its later lines under its first."""
    column = max(len(head.rstrip()) + 2, 32)
    return textwrap.wrap(text, WIDTH, initial_indent=head.rstrip().ljust(column), subsequent_indent=" " * column) or [head.rstrip()]
