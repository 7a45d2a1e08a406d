"""The documentation site stays true to the code: every policy key is in the reference
(and nothing else is), every page is in the site's navigation and the README's list, every
command is in the CLI page."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from aupguard.cli.main import build_parser
from aupguard.policy.config import _FIELDS
from aupguard.policy.moderation import ClaudeExample, ClaudeModeration, GuardModeration, OpenAIModeration, RuleSpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NESTED = {
    "moderation.rules": RuleSpec,
    "moderation.claude": ClaudeModeration,
    "moderation.claude.examples": ClaudeExample,
    "moderation.openai": OpenAIModeration,
    "moderation.guard": GuardModeration,
}


def documented_keys() -> dict[str, set[str]]:
    """``### `[table]` `` headings of docs/policy.md and the `` | `key` | `` rows under each."""
    tables: dict[str, set[str]] = {}
    current: str | None = None
    for line in (DOCS / "policy.md").read_text().splitlines():
        heading = re.fullmatch(r"#{2,3} `\[([a-z_.]+)\]`", line.strip())
        if heading:
            current = heading.group(1)
            tables[current] = set()
        elif line.startswith("#"):
            current = None
        elif current is not None and (row := re.match(r"\| `([a-z_]+)` \|", line)):
            tables[current].add(row.group(1))
    return tables


def code_keys() -> dict[str, set[str]]:
    keys = {table: set(specs) for table, (_, specs) in _FIELDS.items()}
    keys |= {name: {f.name for f in dataclasses.fields(cls)} for name, cls in NESTED.items()}
    return keys


def test_the_policy_reference_documents_every_key_and_no_other() -> None:
    documented, code = documented_keys(), code_keys()
    assert sorted(documented) == sorted(code), "a table is missing from (or unknown to) docs/policy.md"
    for table in code:
        assert documented[table] == code[table], f"[{table}]: docs/policy.md and the code disagree"


def test_the_reference_check_would_catch_a_missing_key() -> None:
    documented = documented_keys()
    documented["gateway"].discard("key_cache")
    assert documented["gateway"] != code_keys()["gateway"]


def test_every_page_is_in_the_site_navigation_and_the_readme() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        assert re.search(rf":\s+{re.escape(page.name)}\s*$", config, re.M), f"{page.name} is not in mkdocs.yml's nav"
        assert f"(docs/{page.name})" in readme, f"{page.name} is not in README.md's documentation list"


def _commands() -> list[str]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_cli_page(command: str) -> None:
    assert re.search(rf"\| `{re.escape(command)}[ `]", (DOCS / "cli.md").read_text()), f"`{command}` in docs/cli.md"
