"""The layering of docs/design.md, "Layers and why", read from every import statement of every package:
models <- stability <- sweeps -> store -> analysis, the command line on top, imported by none."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["models", "stability", "store", "sweeps", "external", "analysis", "benchmarks", "cli", "examples"]
# What each package may import of the project; the user-error type lives in ``store.errors``
# (imported by every layer above models), so the store imports nothing of the project.
ALLOWED = {
    "models": set(),
    "store": set(),
    "stability": {"models", "store"},
    "sweeps": {"models", "stability", "store"},
    "external": {"store"},  # import and export: an adapter of the store, beside the sweep engine
    "analysis": {"store"},
    "benchmarks": {"models", "stability", "store", "sweeps"},
    "cli": {"models", "stability", "store", "sweeps", "external", "analysis", "benchmarks"},
    "examples": {"models", "stability"},  # a user's files register models, data and optimizers
}


def project_imports(path: Path) -> set[str]:
    """Dotted names of project modules the file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def allowed(package: str, name: str) -> bool:
    return name.split(".")[0] == package or any(name == a or name.startswith(a + ".") for a in ALLOWED[package])


@pytest.mark.parametrize("package", PACKAGES)
def test_every_import_follows_the_layering(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad += [
            f"{path.relative_to(ROOT)} imports {name}" for name in project_imports(path) if not allowed(package, name)
        ]
    assert not bad, "\n".join(bad)


def test_the_layering_check_sees_a_violation(tmp_path):
    """The checker itself: an upward import is found, a sibling one in the rules is not."""
    bad = tmp_path / "x.py"
    bad.write_text("from cli import main\nimport sweeps.engine\nfrom store import schema\n")
    names = project_imports(bad)
    assert {"cli", "cli.main", "sweeps.engine", "store", "store.schema"} <= names
    assert sorted(n for n in names if not allowed("analysis", n)) == ["cli", "cli.main", "sweeps.engine"]
    assert not allowed("store", "stability.trainer") and not allowed("store", "stability.errors")
    assert allowed("stability", "store.errors")


def test_the_engine_and_the_workers_do_not_import_each_other():
    """The fault hooks live in sweeps.faults, which both import; neither imports the other."""
    engine, workers = (project_imports(ROOT / "sweeps" / f"{m}.py") for m in ("engine", "workers"))
    assert not any(n.startswith("sweeps.engine") for n in workers)
    assert "sweeps.faults" in workers and any(n.startswith("sweeps.workers") for n in engine)  # one way only


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports, at any depth (inside functions too): ``from a import
    b`` names module ``a.b`` where there is one, else ``a`` itself."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & modules
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= (subs & modules) | ({node.module} if subs - modules else set())
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_module_imports_itself_through_others():
    paths = {module_of(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {m: module_imports(p, set(paths)) - {m} for m, p in paths.items()}
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_circle_at_any_depth(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from cli import main\n")
    b.write_text("from cli.parser import build_parser\n")
    modules = {"cli", "cli.main", "cli.parser"}
    assert module_imports(a, modules) == {"cli.main"} and module_imports(b, modules) == {"cli.parser"}
    graph = {"cli.main": {"cli.slurm"}, "cli.slurm": {"cli.main"}, "cli.parser": {"cli.main"}, "x": set()}
    assert import_cycles(graph) == [["cli.main", "cli.slurm"]]


def test_building_the_parser_imports_no_command():
    """`--help` and a mistyped flag answer without torch, Ray or any command's module."""
    code = (
        "import sys\nfrom cli.parser import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'ray', 'pandas', 'cli', 'sweeps', 'analysis', 'store', 'models', 'benchmarks')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert set(ast.literal_eval(out)) <= {"cli", "cli.main", "cli.parser", "store", "store.errors"}, out
