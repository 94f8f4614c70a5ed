"""dvc.yaml says exactly what each stage uses: its deps are the stage script's import closure plus the
non-Python files that closure reads, and its `params:` are exactly the keys the stage script reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from mnist_transfer.params import Params, schema_fields, section_model
from scripts.stage_deps import DATA_FILES, stage_deps

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "mnist_transfer"
STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_exactly_the_code_it_uses(name: str) -> None:
    stage = STAGES[name]
    script = f"stages/{name}.py"
    assert f"python -m stages.{name} " in stage["cmd"] + " "
    listed = {dep for dep in stage["deps"] if isinstance(dep, str) and dep.startswith(("stages/", "mnist_transfer/"))}
    assert listed == stage_deps(script), f"dvc.yaml stages.{name}.deps: run python scripts/stage_deps.py"


def test_every_template_is_claimed_by_the_module_that_reads_it() -> None:
    templates = {path.relative_to(REPO_ROOT).as_posix() for path in PACKAGE.rglob("templates/*")}
    assert templates == {data for files in DATA_FILES.values() for data in files}
    for module, files in DATA_FILES.items():  # each file is named by the module or by a template it renders
        sources = "".join((REPO_ROOT / path).read_text(encoding="utf-8") for path in [module, *files])
        assert all(Path(data).name in sources for data in files), module


def test_editing_the_dask_code_reruns_no_cnn_stage() -> None:
    for name in ("train_cnn", "label_cnn"):
        assert not {"mnist_transfer/features/embedding.py", "mnist_transfer/features/feature_store.py"} & stage_deps(
            f"stages/{name}.py"
        ), name
    assert "mnist_transfer/evaluation/templates/report.html.j2" in STAGES["report"]["deps"]


@pytest.mark.parametrize("init", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: p.parent.name)
def test_package_inits_hold_only_a_docstring(init: Path) -> None:
    body = ast.parse(init.read_text(encoding="utf-8")).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


# ---- params: the keys a stage reads ----------------------------------------------------------------------


def params_chains(main: ast.FunctionDef) -> set[str]:
    """Dotted params keys main(params) reads: `params.train.seed` → train.seed; a section handed on whole
    (`train_head(…, params.train)`) → train. Local aliases (`train = params.train`) are followed."""
    aliases = {"params": ""}
    for node in ast.walk(main):  # aliases first: `settings = params.label`
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            chain = attribute_chain(node.value, aliases)
            if chain is not None:
                aliases[node.targets[0].id] = chain
    parents = {child: parent for parent in ast.walk(main) for child in ast.iter_child_nodes(parent)}
    keys = set()
    for node in ast.walk(main):
        chain = attribute_chain(node, aliases)
        parent = parents.get(node)
        is_alias = isinstance(parent, ast.Assign) and node is parent.value
        is_stored = isinstance(getattr(node, "ctx", None), ast.Store)  # `settings = …` itself
        if chain and not isinstance(parent, ast.Attribute) and not is_alias and not is_stored:
            keys.add(chain)
    return keys


def attribute_chain(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """'train.seed' for `params.train.seed` (or `train.seed` with train an alias); None if not rooted at params."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join(part for part in [aliases[node.id], *reversed(parts)] if part)


def leaf_keys(keys: set[str]) -> set[str]:
    """Every schema leaf under the given keys (a section stands for all of its keys)."""
    leaves = [key for key, _ in schema_fields()]
    return {leaf for key in keys for leaf in leaves if leaf == key or leaf.startswith(key + ".")}


def stage_main(name: str) -> ast.FunctionDef:
    tree = ast.parse((REPO_ROOT / f"stages/{name}.py").read_text(encoding="utf-8"))
    return next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")


def test_params_chains_known_answer() -> None:
    main = ast.parse(
        "def main(params):\n"
        "    settings = params.label\n"
        "    f(params.train, settings.shards, params.data.download.attempts)\n"
        "    x = params.cnn.augment\n"
        "    g(x)\n"
    ).body[0]
    assert params_chains(main) == {"train", "label.shards", "data.download.attempts", "cnn.augment"}
    assert leaf_keys({"cnn.augment"}) == {f"cnn.augment.{key}" for key in section_model(
        Params.model_fields["cnn"].annotation).model_fields["augment"].annotation.model_fields}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_list_exactly_the_keys_it_reads(name: str) -> None:
    read = params_chains(stage_main(name))
    listed = set(STAGES[name].get("params", []))
    assert leaf_keys(read) == leaf_keys(listed), f"stages/{name}.py reads {sorted(read)}; dvc.yaml lists {sorted(listed)}"


# ---- stage scripts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted((REPO_ROOT / "stages").glob("[!_]*.py")), ids=lambda p: p.stem)
def test_stage_scripts_are_thin(script: Path) -> None:
    """A stage script holds main(params) and nothing else that other code could want."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert [node.name for node in functions] == ["main"]
    assert [arg.arg for arg in functions[0].args.args] == ["params"]
    assert script.stem in STAGES


def test_no_stage_recasts_a_param() -> None:
    """params arrive typed: int(params…)/float(params…)/str(params…) or dict-style access would mean they do not."""
    for script in sorted((REPO_ROOT / "stages").glob("[!_]*.py")):
        main = stage_main(script.stem)
        aliases = {"params": "", **{n.targets[0].id: "x" for n in ast.walk(main) if isinstance(n, ast.Assign)
                                    and isinstance(n.targets[0], ast.Name) and attribute_chain(n.value, {"params": ""})}}
        for node in ast.walk(main):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("int", "float", "str", "bool"):
                assert not any(attribute_chain(arg, aliases) is not None for arg in node.args), (script, ast.unparse(node))
            if isinstance(node, ast.Subscript):
                assert attribute_chain(node.value, aliases) is None, (script, ast.unparse(node))


def test_nothing_imports_the_stage_scripts() -> None:
    for folder in ("mnist_transfer", "benchmarks", "scripts", "tests"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            assert not any(module.startswith("stages") for module in _all_imports(path)), path


def _all_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found
