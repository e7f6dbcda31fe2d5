"""The package's shape: folders whose imports go one way (no module imports another that imports it
back, and no lower part imports a higher one), modules and classes small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vaebench"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150

# What each part may not import (by its folder under vaebench/). The maths sits on the ground floor:
# densities import nothing of vaebench; priors, objectives and metrics take distributions and callables,
# not the run; views know names and tensors, not the run; the report reads run folders.
FORBIDDEN = {
    "distributions": {"config", "datasets", "models", "priors", "objectives", "metrics", "run", "views", "report", "cli"},
    "datasets": {"models", "priors", "objectives", "metrics", "run", "views", "report", "cli"},
    "models": {"datasets", "priors", "objectives", "run", "views", "report", "cli"},
    "priors": {"datasets", "models", "objectives", "metrics", "run", "views", "report", "cli"},
    "objectives": {"datasets", "models", "priors", "run", "views", "report", "cli"},
    "metrics": {"config", "models", "priors", "objectives", "run", "views", "report", "cli"},
    "config": {"run", "views", "report", "cli"},
    "views": {"run", "report", "cli"},
    "run": {"report", "cli"},
    "report": {"cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The vaebench modules `path` imports anywhere in its code (deferred imports inside functions
    included): `from vaebench.x import y` names the module vaebench.x.y when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("vaebench")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaebench") and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                      for alias in node.names}
    return found & known


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) - {name} for name, path in found.items()}


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycles.append(" -> ".join(trail[trail.index(other):] + [other]))
            elif other not in state:
                visit(other, trail + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_no_part_imports_a_higher_one():
    graph = import_graph()
    wrong = [f"{module} imports {other}" for module, others in graph.items() for other in sorted(others)
             if part(other) in FORBIDDEN.get(part(module), set())]
    assert not wrong, "\n".join(wrong)


def test_every_folder_of_the_package_is_a_known_part():
    folders = {path.parent.name for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE}
    assert folders == set(FORBIDDEN), "a new folder needs its place in FORBIDDEN (what it may not import)"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_classes_stay_small_enough_to_read(path):
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {source.count(chr(10))} lines; split it by idea"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_CLASS_LINES, f"{path.name}: class {node.name} has {length} lines; split it by responsibility"


def test_the_import_graph_sees_the_imports_it_checks():
    """The checks above read real edges: the training loop imports its step, the report its table."""
    graph = import_graph()
    assert "vaebench.run.step" in graph["vaebench.run.trainer"]
    assert "vaebench.report.table" in graph["vaebench.report.command"]
    assert "vaebench.metrics.elbo" in graph["vaebench.models.vae"]


def test_readmes_map_of_the_code_is_the_tree():
    """README's "The code": one line per folder of the package and per folder of the tests, no more."""
    readme = (PACKAGE.parent / "README.md").read_text()
    block = readme.split("## The code", 1)[1].split("```", 2)[1]
    listed = {line.split()[0].rstrip("/") for line in block.splitlines() if line.startswith("  ") and line.split()[0].endswith("/")}
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    assert listed == folders
    tests = PACKAGE.parent / "tests"
    assert {path.name for path in tests.iterdir() if (path / "__init__.py").is_file()} == folders
