"""Every body shape x prompt mode x allow flags: a decision that is allowed must not carry the
flagged text (unscreened) in what goes on: upstream_body (gateway) or decision.body (app)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest

from aupguard.engine.request_body import BadBody, prompt_from_body, upstream_body
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
H = "step by step nerve agent synthesis"
ALLOWED = "what is the weather"

SPOTS: dict[str, Any] = {
    "system": lambda b: b.__setitem__("system", H),
    "system_block": lambda b: b.__setitem__("system", [{"type": "text", "text": H}]),
    "history": lambda b: b.setdefault("messages", []).insert(0, {"role": "user", "content": H}),
    "prefill": lambda b: b.setdefault("messages", []).append({"role": "assistant", "content": H}),
    "tool_desc": lambda b: b.__setitem__(
        "tools", [{"name": "t", "description": H, "input_schema": {"type": "object"}}]
    ),
    "tool_schema": lambda b: b.__setitem__(
        "tools", [{"name": "t", "input_schema": {"type": "object", "description": H}}]
    ),
    "var_extra": lambda b: b.setdefault("variables", {}).__setitem__("zz", H),
    "doc_block": lambda b: b.setdefault("messages", []).insert(
        0,
        {
            "role": "user",
            "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": H}}],
        },
    ),
}


def bases(mode: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"model": "m", "max_tokens": 5, "prompt": ALLOWED},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": ALLOWED}]},
        {"model": "m", "max_tokens": 5, "template": "t", "variables": {}},
    ]
    if mode == "corpus":
        for b in out:
            b["documents"] = ["d1"]
    return out


@pytest.mark.parametrize("mode", ["open", "allowlist", "templates", "corpus"])
def test_matrix(make_guard: MakeGuard, tmp_path: Path, mode: str) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "d1.txt").write_text("doc")
    problems = []
    for hist, sysok, monitor in itertools.product([False, True], [False, True], [False, True]):
        prompts: dict[str, Any] = {"mode": mode, "allow_history": hist, "allow_system": sysok,
                                   "allowlist": [ALLOWED], "templates": {"t": {"text": ALLOWED}},
                                   "corpus": str(corpus)}  # fmt: skip
        guard = make_guard({"moderation": {"rules": RULES}, "prompts": prompts,
                            "enforcement": {"mode": "monitor" if monitor else "enforce"}})  # fmt: skip
        for base, (spot, put) in itertools.product(bases(mode), SPOTS.items()):
            body = copy.deepcopy(base)
            put(body)
            try:
                req = prompt_from_body(body)
            except BadBody:
                continue
            d = guard.check("alice", prompt=req)
            if not d.allowed or "would_refuse:content_flagged" in d.reasons:
                continue
            up = str(upstream_body(d.prompt)) if d.prompt is not None else ""
            app = str(d.body)
            if H in up or H in app:
                problems.append(
                    (mode, hist, sysok, monitor, list(base)[2], spot, "upstream" if H in up else "app-body")
                )
    assert not problems, "\n".join(map(str, problems))
