"""The policy examples in README.md and docs/ load: docs stay true to the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from aupguard import Policy

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = [
    pytest.param(block, id=f"{path.name}#{n}")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for n, block in enumerate(re.findall(r"```toml\n(.*?)```", path.read_text(), re.S))
]


@pytest.mark.parametrize("block", BLOCKS)
def test_every_policy_example_in_the_docs_loads(block: str, tmp_path: Path) -> None:
    data = tomllib.loads(block)
    if data.get("prompts", {}).get("mode") == "corpus":
        pytest.fail("a corpus example would need a corpus on disk")
    Policy.from_mapping(data, env={})


def test_the_docs_have_policy_examples() -> None:
    assert len(BLOCKS) >= 3
