"""The allowed values of a setting, declared on the argument that reads it.

A component states its arguments' types in its own signature, e.g.

    def __init__(self, latent_dim: int, K: Count = 500, init: Literal["random", "data"] = "random")

and `check_arguments` holds a config entry against that signature before any work starts: every key
must be an argument, every required argument must have a value, and every value must fit its type
(`int`, `float`, `bool`, `str`, `Literal[...]`, `X | None`) and the rule an `Annotated` type adds
(`Count`: an integer >= 1). Nothing else keeps a table of keys or choices.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

from omegaconf import OmegaConf

from vaebench.errors import UserError


@dataclass(frozen=True)
class Rule:
    allowed: str                  # how the message says it: "an integer >= 1"
    ok: Callable[[Any], bool]


def _is_integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v) -> bool:
    # Hydra reads `inf` and `nan` as floats; either would only surface later as a diverged run.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def at_least(minimum: int) -> Rule:
    return Rule(f"an integer >= {minimum}", lambda v: _is_integer(v) and v >= minimum)


def number_above(minimum: float, strict: bool = False) -> Rule:
    return Rule(f"a finite number {'>' if strict else '>='} {minimum:g}",
                lambda v: _is_finite_number(v) and (v > minimum if strict else v >= minimum))


class Unused:
    """Marks an argument a component accepts and ignores (`K: Annotated[int | None, Unused()]`), so
    that one sweep grid can set it for every component of a group; run names and HParams leave it out."""

    def __eq__(self, other) -> bool:
        return isinstance(other, Unused)

    def __hash__(self) -> int:
        return hash(Unused)


def unused_arguments(target) -> set[str]:
    return {name for name, annotation in declared_types(target).items()
            if typing.get_origin(annotation) is Annotated and any(isinstance(a, Unused) for a in typing.get_args(annotation)[1:])}


# A file a component reads (relative to where vaebench runs): a missing one is refused on the command line.
ExistingFile = Annotated[str, Rule("the path of an existing file (from the folder vaebench runs in, or absolute)",
                                   lambda v: isinstance(v, str) and Path(v).is_file())]
Count = Annotated[int, at_least(1)]
NonNegativeInt = Annotated[int, at_least(0)]
Positive = Annotated[float, number_above(0, strict=True)]
NonNegative = Annotated[float, number_above(0)]

_PLAIN = {
    bool: Rule("true or false", lambda v: isinstance(v, bool)),
    int: Rule("an integer", _is_integer),
    float: Rule("a finite number", _is_finite_number),
    str: Rule("text", lambda v: isinstance(v, str)),
}


def rule_for(annotation) -> Rule | None:
    """The rule a type annotation states; None where it states none that a config value could meet."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        declared = [a for a in args[1:] if isinstance(a, Rule)]
        return declared[0] if declared else rule_for(args[0])
    if origin is Literal:
        return Rule("one of " + ", ".join(map(str, args)), lambda v: v in args)
    if origin in (Union, types.UnionType):
        options = [rule_for(a) for a in args if a is not type(None)]
        if any(rule is None for rule in options):
            return None
        allowed = " or ".join(rule.allowed for rule in options)
        if type(None) in args:
            allowed += ", or null"
        return Rule(allowed, lambda v: (v is None and type(None) in args) or any(r.ok(v) for r in options))
    return _PLAIN.get(annotation)


def declared_types(target) -> dict[str, Any]:
    """The annotations of a callable's (a class's __init__'s) or a dataclass's arguments; those that
    cannot be resolved are left out rather than guessed."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # a forward reference the module cannot resolve: check names only
        return {}


def parameters(target) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(target).parameters)


def check_arguments(node, where: str, target, provided: tuple[str, ...] = (), entry: str = "",
                    extra_keys_allowed: bool = False) -> None:
    """Refuse a config entry that does not fit `target`'s signature, in one paragraph.

    `where` is the entry's key (`prior`), `entry` how the user chose it (`prior=vamp`), `provided`
    the arguments the run itself hands in (the data shape, the encoder)."""
    entry = entry or where or "the config"
    params = parameters(target)
    takes_any = extra_keys_allowed or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items()
             if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL) and n not in provided]
    path = _qualified_name(target)
    keys = [str(k) for k in node.keys() if not str(k).startswith("_")]
    for key in keys:
        if key in provided:
            raise UserError(f"{_dotted(where, key)} cannot be set in the config: the run itself hands {path} its {key}.")
        if key not in params and not takes_any:
            raise UserError(f"{_dotted(where, key)} is not an argument of {path} ({entry}): its arguments are "
                            f"{', '.join(_dotted(where, n) for n in named) or 'none'}. Remove {_dotted(where, key)}, "
                            f"or add it to {path}.")
    for name in named:
        if params[name].default is inspect.Parameter.empty and name not in keys:
            raise UserError(f"{entry} needs {_dotted(where, name)}, which has no value: add {_dotted(where, name)}=VALUE.")
    types_ = declared_types(target)
    for key in (k for k in keys if k in params):
        if OmegaConf.is_missing(node, key):
            raise UserError(f"{entry} needs {_dotted(where, key)}, which has no value: add {_dotted(where, key)}=VALUE.")
        value = node[key]
        rule = rule_for(types_[key]) if key in types_ else None
        if rule is not None and not OmegaConf.is_config(value) and not rule.ok(value):
            shown = f"{value!r}" if isinstance(value, str) else "null" if value is None else str(value)
            raise UserError(f"{_dotted(where, key)}={shown} is not allowed: {_dotted(where, key)} must be {rule.allowed}.")


def _dotted(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _qualified_name(target) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
