"""Rewrite the code deps of every stage in dvc.yaml: the stage script, its import closure in mnist_transfer/ and
the non-Python files that closure reads, so that DVC reruns a stage exactly when code it runs has changed.

    python scripts/stage_deps.py [--check]

tests/test_layout.py checks dvc.yaml against the same function.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = REPO_ROOT / "dvc.yaml"
CODE_PREFIXES = ("stages/", "mnist_transfer/")
# module → the non-Python files it reads (a new template must be claimed here: see the test below)
DATA_FILES = {
    "mnist_transfer/evaluation/report_html.py": ["mnist_transfer/evaluation/templates/report.html.j2"],
    "mnist_transfer/app/webapp.py": [
        "mnist_transfer/app/templates/draw.html.j2",
        "mnist_transfer/app/templates/number_mode.html.j2",  # {% include %}d by draw.html.j2
    ],
}


def module_file(module: str) -> Path:
    """mnist_transfer.data.idx → mnist_transfer/data/idx.py (a package → its __init__.py)."""
    path = REPO_ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def package_imports(path: Path) -> set[str]:
    """Modules of mnist_transfer one file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_transfer"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}").is_file()}
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mnist_transfer")}
    return found


def import_closure(script: Path) -> set[str]:
    """Package files (relative to the repository) a script imports, directly or through other modules.

    Packages' __init__.py files are left out: they hold only a docstring (test below), so editing them
    changes nothing a stage computes."""
    seen: set[str] = set()
    pending = list(package_imports(script))
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending += package_imports(module_file(module))
    files = {module_file(module).relative_to(REPO_ROOT).as_posix() for module in seen}
    return {path for path in files if not path.endswith("__init__.py")}


def stage_deps(script: str) -> set[str]:
    """What a stage's `deps:` must list of the code: the script, its import closure, the files those read."""
    code = {script} | import_closure(REPO_ROOT / script)
    return code | {data for module in code for data in DATA_FILES.get(module, [])}


def with_code_deps(dvc_text: str, stages: dict[str, set[str]]) -> str:
    """dvc.yaml's text with each stage's code deps (lines `- stages/…`, `- mnist_transfer/…`) replaced, in place."""
    lines, out, stage, in_deps, indent = dvc_text.splitlines(keepends=True), [], None, False, ""
    for line in lines:
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            stage, in_deps = stripped[:-1], False
        if stripped == "deps:":
            in_deps, indent = True, " " * (len(line) - len(line.lstrip()) + 2)
            out.append(line)
            continue
        if in_deps and stripped.startswith("- "):
            if stripped[2:].startswith(CODE_PREFIXES):
                continue
            out.append(line)
            continue
        if in_deps:  # the first line after the deps list: the code deps go last in it, the stage script first
            code = sorted(stages[stage], key=lambda dep: (not dep.startswith("stages/"), dep))
            out += [f"{indent}- {dep}\n" for dep in code]
            in_deps = False
        out.append(line)
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit status 1 when dvc.yaml is stale")
    args = parser.parse_args()
    names = yaml.safe_load(DVC_YAML.read_text(encoding="utf-8"))["stages"]
    text = DVC_YAML.read_text(encoding="utf-8")
    updated = with_code_deps(text, {name: stage_deps(f"stages/{name}.py") for name in names})
    if args.check:
        sys.exit(0 if updated == text else 1)
    DVC_YAML.write_text(updated, encoding="utf-8")
    print("dvc.yaml: code deps " + ("unchanged" if updated == text else "rewritten"))


if __name__ == "__main__":
    main()
