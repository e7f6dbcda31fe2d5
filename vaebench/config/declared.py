"""A vaebench component's declared arguments, read from its source file (Python's `ast`) instead of by
importing it: the command line's values are checked against them before torch is imported, so
`prior.K=0` is refused in a fraction of a second, not after the seconds torch takes to load. The run
checks the component itself again when it builds it (`components.check_component`); a component of
the user's own, or an annotation this cannot resolve, is left to that check."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

from vaebench.config import checks

PACKAGE = Path(__file__).resolve().parents[1]  # vaebench/
_NAMES = {**vars(typing), **{k: v for k, v in vars(checks).items() if not k.startswith("_")}, "Path": Path}


def stand_in(target: str):
    """A callable with `target`'s signature and the annotations that resolve (vaebench's own
    components only), for `checks.check_arguments`; None where the source does not say."""
    module, _, name = target.rpartition(".")
    found = _definition(module, name, depth=0)
    if found is None:
        return None
    function = found
    if isinstance(found, ast.ClassDef):
        function = next((f for f in found.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
        if function is None:
            return None
    parameters, annotations = _parameters(function, skip_first=isinstance(found, ast.ClassDef))

    def declared(*args, **kwargs):  # stands in for the component: never called
        raise NotImplementedError

    declared.__signature__ = inspect.Signature(parameters)
    declared.__annotations__ = annotations
    declared.__module__, declared.__qualname__ = module, name
    return declared


def _definition(module: str, name: str, depth: int):
    """The class or function `name` of `module`, following `from X import name` re-exports."""
    if depth > 4 or not (module == "vaebench" or module.startswith("vaebench.")):
        return None
    folder = PACKAGE.joinpath(*module.split(".")[1:])
    file = folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")
    try:
        tree = ast.parse(file.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any((alias.asname or alias.name) == name for alias in node.names):
            original = next(alias.name for alias in node.names if (alias.asname or alias.name) == name)
            source = node.module or ""
            if node.level:  # a relative import
                base = module.split(".") if file.name == "__init__.py" else module.split(".")[:-1]
                source = ".".join(base[:len(base) - node.level + 1] + ([source] if source else []))
            return _definition(source, original, depth + 1)
    return None


def _parameters(function: ast.FunctionDef, skip_first: bool):
    arguments = function.args
    positional = arguments.posonlyargs + arguments.args
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    listed = list(zip(positional, defaults))[1 if skip_first else 0:]
    listed += list(zip(arguments.kwonlyargs, arguments.kw_defaults))
    parameters, annotations = [], {}
    for index, (argument, default) in enumerate(listed):
        kind = (inspect.Parameter.KEYWORD_ONLY if argument in arguments.kwonlyargs
                else inspect.Parameter.POSITIONAL_OR_KEYWORD)
        parameters.append(inspect.Parameter(argument.arg, kind,
                                            default=inspect.Parameter.empty if default is None else _default(default)))
        if argument.annotation is not None:
            try:
                annotations[argument.arg] = eval(ast.unparse(argument.annotation), dict(_NAMES))  # noqa: S307 (our own source)
            except Exception:  # a type of the component's own module: left to the run's check
                pass
    if arguments.kwarg is not None:
        parameters.append(inspect.Parameter(arguments.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return parameters, annotations


def _default(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ...  # a default that is not a literal: there is one, which is all the check needs
