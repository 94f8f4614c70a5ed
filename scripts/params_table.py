"""The params table: one row per key of the params.yaml schema (mnist_transfer/params.py), in Markdown.

    python scripts/params_table.py          print it

scripts/docs_hooks.py renders it into the docs' Parameters page (docs/params.md) at build time, so the page
never drifts from the schema.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from mnist_transfer.params import schema_fields


def _show_default(info: Any) -> str:
    extra = info.json_schema_extra or {}
    if "shown" in extra:
        return str(extra["shown"])
    default = info.get_default(call_default_factory=True)
    if default is None or isinstance(default, (bool, str)):
        return f"`{yaml.safe_dump(default).splitlines()[0]}`"
    return str(default)


def params_table_markdown() -> str:
    """The params table, generated from the schema (one row per key)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | {_show_default(info)} | {info.description or ''} |" for key, info in schema_fields()]
    return "\n".join(lines) + "\n"


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print(params_table_markdown(), end="")


if __name__ == "__main__":
    main()
