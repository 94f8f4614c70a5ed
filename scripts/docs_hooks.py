"""MkDocs hooks (mkdocs.yml `hooks:`): the docs pages that are generated at build time, so they cannot drift.

- `<!-- params-reference -->` (docs/params.md) becomes the params reference: scripts/params_table.py's table of
  the pydantic schema (mnist_transfer/params.py), one section per heading, plus the stages that read each key
  (dvc.yaml's `params:`), i.e. what reruns when it changes.
- `<!-- benchmark-records -->` (docs/benchmarks.md) becomes one table per benchmark from the JSON records that
  benchmarks/record.py appends to docs/benchmarks/<name>.json, each row stamped with commit, date and machine.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # mkdocs loads this file by path: make `scripts` importable
    sys.path.insert(0, str(REPO_ROOT))

from scripts import params_table  # after the sys.path line above

PARAMS_MARKER = "<!-- params-reference -->"
BENCHMARKS_MARKER = "<!-- benchmark-records -->"
RECORDS_DIR = REPO_ROOT / "docs" / "benchmarks"
DVC_YAML = REPO_ROOT / "dvc.yaml"
ROW_KEY = re.compile(r"^\| `([^`]+)` \|")
INTERPOLATED = re.compile(r"\$\{\s*([\w.]+)\s*\}")  # a param DVC substitutes into a stage's command or paths


def stages_reading(key: str, stage_params: dict[str, list[str]]) -> list[str]:
    """The stages whose dvc.yaml `params:` cover key ('train' covers 'train.epochs'), in pipeline order."""
    return [stage for stage, params in stage_params.items()
            if any(key == param or key.startswith(param + ".") for param in params)]


def dvc_stage_params(dvc_yaml: Path = DVC_YAML) -> dict[str, list[str]]:
    """stage → the params keys it declares in dvc.yaml's `params:` or interpolates (`${data.kaggle_dir}`)."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")).get("stages", {})
    return {
        name: [str(param) for param in (stage.get("params") or [])] + INTERPOLATED.findall(json.dumps(stage))
        for name, stage in stages.items()
    }


def params_reference_markdown(dvc_yaml: Path = DVC_YAML) -> str:
    """scripts/params_table.py's table, split into one table per params.yaml section, with the stages reading each key."""
    stage_params = dvc_stage_params(dvc_yaml)
    header, _, *rows = params_table_markdown().splitlines()
    sections: dict[str, list[str]] = {}
    for row in rows:
        key = ROW_KEY.match(row).group(1)  # every row of the table starts with its key
        readers = ", ".join(f"`{stage}`" for stage in stages_reading(key, stage_params)) or "—"
        sections.setdefault(key.split(".")[0], []).append(f"{row} {readers} |")
    parts = []
    for section, section_rows in sections.items():
        parts += [f"## `{section}`", "", f"{header} read by |", "| --- | --- | --- | --- |", *section_rows, ""]
    return "\n".join(parts)


def params_table_markdown() -> str:
    """The table of every schema key, looked up at call time (so a test can swap the schema)."""
    return params_table.params_table_markdown()


def load_records(records_dir: Path = RECORDS_DIR) -> dict[str, list[dict[str, Any]]]:
    """benchmark name → its records, oldest first, from every records_dir/*.json (sorted by name)."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(records_dir.glob("*.json"))}


def cell(value: Any) -> str:
    """A figure or setting as a table cell: thousands separators, no pipes or newlines."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "—" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def stamp_cells(entry: dict[str, Any]) -> list[str]:
    """Date (UTC, to the minute), commit (+ when the working tree had changes), machine."""
    machine = entry.get("machine") or {}
    memory = f", {machine['memory_gib']} GiB" if machine.get("memory_gib") else ""
    commit = f"`{entry.get('commit', '?')}`" + (" + changes" if entry.get("dirty") else "")
    date = str(entry.get("date", "?")).replace("T", " ")[:16]
    return [date, commit, f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores{memory}"]


def union_keys(entries: list[dict[str, Any]], field: str) -> list[str]:
    """The keys of entries' field (setup or figures) in first-seen order."""
    keys: dict[str, None] = {}
    for entry in entries:
        keys.update(dict.fromkeys(entry.get(field) or {}))
    return list(keys)


def records_table(entries: list[dict[str, Any]]) -> list[str]:
    """One row per record, newest first: the stamp, then every setup key, then every figure."""
    setup_keys, figure_keys = union_keys(entries, "setup"), union_keys(entries, "figures")
    header = ["date (UTC)", "commit", "machine", *setup_keys, *figure_keys]
    lines = ["| " + " | ".join(cell(name) for name in header) + " |", "|" + " --- |" * len(header)]
    for entry in reversed(entries):
        values = [(entry.get("setup") or {}).get(key) for key in setup_keys]
        values += [(entry.get("figures") or {}).get(key) for key in figure_keys]
        lines.append("| " + " | ".join(stamp_cells(entry) + [cell(value) for value in values]) + " |")
    return lines


def benchmark_records_markdown(records_dir: Path = RECORDS_DIR) -> str:
    """One section per benchmark with its records, or a note that none has been recorded yet."""
    records = load_records(records_dir)
    if not records:
        return "*No benchmark has recorded a run yet: run one (`python -m benchmarks.<name> …`) and rebuild.*\n"
    parts = []
    for name, entries in records.items():
        parts += [f"### `{name}`", "", f"`python -m benchmarks.{name}`, {len(entries)} run(s), newest first.", ""]
        parts += [*records_table(entries), ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any = None, config: Any = None, files: Any = None) -> str:
    """MkDocs hook: replace the markers by their generated content."""
    if PARAMS_MARKER in markdown:
        markdown = markdown.replace(PARAMS_MARKER, params_reference_markdown())
    if BENCHMARKS_MARKER in markdown:
        markdown = markdown.replace(BENCHMARKS_MARKER, benchmark_records_markdown())
    return markdown


def on_serve(server: Any, config: Any = None, builder: Any = None) -> Any:
    """MkDocs hook: `mkdocs serve` also rebuilds when the schema or dvc.yaml changes."""
    for path in (REPO_ROOT / "mnist_transfer" / "params.py", DVC_YAML):
        server.watch(str(path))
    return server
