"""The split between the package and the stage scripts: dvc.yaml deps follow the real imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def package_imports(path: Path) -> set[str]:
    """Modules of mnist_transfer imported by one file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_transfer"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mnist_transfer")}
    return found


def imported_files(script: Path) -> set[str]:
    """Package files a stage script imports, directly or through other package modules."""
    seen: set[str] = set()
    pending = list(package_imports(script))
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending += package_imports(REPO_ROOT / (module.replace(".", "/") + ".py"))
    return {module.replace(".", "/") + ".py" for module in seen if module != "mnist_transfer"}


STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_exactly_the_code_it_imports(name: str) -> None:
    stage = STAGES[name]
    script = f"stages/{name}.py"
    assert f"python -m stages.{name} " in stage["cmd"] + " "
    code_deps = {dep for dep in stage["deps"] if isinstance(dep, str) and dep.endswith(".py")}
    assert code_deps == {script} | imported_files(REPO_ROOT / script)


@pytest.mark.parametrize("script", sorted((REPO_ROOT / "stages").glob("[!_]*.py")), ids=lambda p: p.stem)
def test_stage_scripts_are_thin(script: Path) -> None:
    """A stage script holds main() and nothing else that other code could want."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    functions = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert functions == ["main"]
    assert script.stem in STAGES


def test_nothing_imports_the_stage_scripts() -> None:
    for folder in ("mnist_transfer", "benchmarks", "scripts", "tests"):
        for path in (REPO_ROOT / folder).glob("*.py"):
            assert not any(module.startswith("stages") for module in _all_imports(path)), path


def _all_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found
