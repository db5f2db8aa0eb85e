"""The layering of DESIGN section 2, read from every import statement of every package:
models <- stability <- sweeps -> store -> analysis, the command line on top, imported by none."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["models", "stability", "store", "sweeps", "analysis", "benchmarks", "cli", "examples"]
# What each package may import of the project; the user-error type lives in ``store.errors``
# (imported by every layer above models), so the store imports nothing of the project.
ALLOWED = {
    "models": set(),
    "store": set(),
    "stability": {"models", "store"},
    "sweeps": {"models", "stability", "store"},
    "analysis": {"store"},
    "benchmarks": {"models", "stability", "store", "sweeps"},
    "cli": {"models", "stability", "store", "sweeps", "analysis", "benchmarks"},
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
