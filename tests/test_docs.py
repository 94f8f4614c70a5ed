"""The README stays short and its links resolve; the docs site's generated pages follow the code; the site builds
with `mkdocs build --strict` (broken links and anchors fail it)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from pydantic import Field, create_model

from benchmarks import record as benchmark_record
from mnist_transfer.params import Params, Section, schema_fields
from scripts import docs_hooks, params_table

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
MAX_README_LINES = 150
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def rendered(page: str) -> str:
    """A docs page's Markdown after the hooks, as MkDocs renders it."""
    return docs_hooks.on_page_markdown((DOCS / page).read_text(encoding="utf-8"))


def heading_slugs(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as Python-Markdown's toc makes them."""
    slugs = set()
    for line in markdown.splitlines():
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            text = unicodedata.normalize("NFKD", match.group(1)).encode("ascii", "ignore").decode()
            text = re.sub(r"[^\w\s-]", "", text).strip().lower()
            slugs.add(re.sub(r"[-\s]+", "-", text))
    return slugs


def test_the_readme_is_short():
    n_lines = len(README.read_text(encoding="utf-8").splitlines())
    assert n_lines <= MAX_README_LINES, f"README.md has {n_lines} lines: move the details into docs/"


def test_every_relative_link_in_the_readme_points_to_an_existing_file_and_heading():
    links = MARKDOWN_LINK.findall(README.read_text(encoding="utf-8"))
    relative = [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]
    assert relative, "the README links into docs/"
    for link in relative:
        path, _, anchor = link.partition("#")
        target = REPO_ROOT / path
        assert target.exists(), f"README.md links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in heading_slugs(target.read_text(encoding="utf-8")), f"README.md: no heading #{anchor} in {path}"


def test_the_params_reference_lists_every_schema_key_with_its_stages():
    page = rendered("params.md")
    assert docs_hooks.PARAMS_MARKER not in page
    for key, info in schema_fields():
        assert f"| `{key}` |" in page, f"docs/params.md lacks {key}"
        assert (info.description or "") in page
    assert "| `train.learning_rate` | 0.001 | Adam learning rate (> 0) | `train` |" in page
    assert "| `cnn.augment.zoom` |" in page and "`train_cnn`, `train_reader` |" in page


def test_the_params_reference_follows_the_schema(monkeypatch):
    probe = create_model("ProbeParams", __base__=Section, answer=(int, Field(42, description="a key added to the schema")))
    extended = create_model("ExtendedParams", __base__=Params, probe=(probe, Field(default_factory=probe)))
    before = rendered("params.md")
    monkeypatch.setattr(params_table, "schema_fields", lambda: schema_fields(extended))
    after = rendered("params.md")
    assert "`probe.answer`" not in before
    assert "| `probe.answer` | 42 | a key added to the schema | — |" in after
    assert "## `probe`" in after


def test_stages_reading_a_key_follow_dvc_yaml():
    stage_params = {"train": ["train", "backbone"], "train_cnn": ["train.own_weight"], "label": ["label.shards"]}
    assert docs_hooks.stages_reading("train.own_weight", stage_params) == ["train", "train_cnn"]
    assert docs_hooks.stages_reading("train.epochs", stage_params) == ["train"]
    assert docs_hooks.stages_reading("label.shards_extra", stage_params) == []


def test_a_benchmark_record_round_trips_into_the_benchmarks_page(tmp_path):
    for raw in (795.1, 801.7):
        benchmark_record.record("bottlenecks", {"raw images/s": raw, "cold/raw": 0.7246}, setup={"images": 8192},
                                records_dir=tmp_path)
    (saved,) = json.loads((tmp_path / "bottlenecks.json").read_text(encoding="utf-8"))[-1:]
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["cpu"] and saved["date"].endswith("+00:00")
    assert re.fullmatch(r"[0-9a-f]{4,40}|unknown", saved["commit"])
    page = docs_hooks.benchmark_records_markdown(tmp_path)
    assert "### `bottlenecks`" in page and "2 run(s)" in page
    assert "| date (UTC) | commit | machine | images | raw images/s | cold/raw |" in page
    newest, oldest = page.index("801.7"), page.index("795.1")
    assert newest < oldest and f"`{saved['commit']}`" in page and "8,192" in page


def test_the_benchmarks_page_says_when_nothing_is_recorded(tmp_path):
    assert "No benchmark has recorded a run yet" in docs_hooks.benchmark_records_markdown(tmp_path)
    assert docs_hooks.BENCHMARKS_MARKER not in rendered("benchmarks.md")


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    missing = [name for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing:
        pytest.skip(f"needs the docs extra (pip install -e '.[docs]'): {', '.join(missing)} not installed")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    params_page = (tmp_path / "site" / "params" / "index.html").read_text(encoding="utf-8")
    assert "train.learning_rate" in params_page and docs_hooks.PARAMS_MARKER not in params_page
