"""The layer contract (pyproject.toml's [tool.importlinter]): imports only point down, no stage imports the app,
the data layer imports nothing of TensorFlow, and no module imports itself back through others."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=repo, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)},
    )


def import_cycles(package: str) -> list[list[str]]:
    """Every cycle of direct imports between modules of `package` (Tarjan's strongly connected components)."""
    graph = grimp.build_graph(package)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1 or module in edges[module]:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return cycles


def test_the_layer_contracts_are_kept() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_no_import_cycles() -> None:
    assert import_cycles("mnist_transfer") == []


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract"),
    [
        ("mnist_transfer/data/idx.py", "import mnist_transfer.models.cnn", "Imports only point down"),
        ("mnist_transfer/evaluation/report.py", "import mnist_transfer.app.predict", "Imports only point down"),
        ("stages/report.py", "import mnist_transfer.app.cli", "No stage imports"),
        ("mnist_transfer/data/normalise.py", "import tensorflow", "The data layer imports nothing of TensorFlow"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, forbidden_import: str, contract: str) -> None:
    """The contract can fail: the same check on a copy of the code with one forbidden import added."""
    for part in ("mnist_transfer", "stages", "pyproject.toml"):
        source = REPO_ROOT / part
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, tmp_path / part, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
    with open(tmp_path / module, "a", encoding="utf-8") as handle:
        handle.write(f"\n{forbidden_import}  # added by the test\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and forbidden_import.split()[-1] in result.stdout


def test_a_cycle_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import cyclic.b\n")
    (package / "b.py").write_text("from cyclic import c\n")
    (package / "c.py").write_text("import cyclic.a\n")
    (package / "d.py").write_text("import cyclic.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic") == [["cyclic.a", "cyclic.b", "cyclic.c"]]
